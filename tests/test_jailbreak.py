"""The prompt-template jailbreak: a prompt view over the forget-side splits only, each template's text around the
question, few-shot demonstrations drawn from the named training split, one-line refusals; end to end, the
attacked prompts are what the stage scores and what its examples record."""

from __future__ import annotations

import json

import pytest

from _method_fixtures import CPU, data_and_tokenizer
from conftest import read_results, run_cli
from unlearn_cli.attacks import jailbreak
from unlearn_cli.attacks.context import AttackContext
from unlearn_cli.components import make
from unlearn_cli.errors import UserError
from unlearn_cli.registry import ATTACKS


def _ctx(seed=0):
    data, tok = data_and_tokenizer()
    return AttackContext({}, tok, seed, tok.pad_token_id, CPU, lambda *a: None, "jb", train_items=data.train,
                         forget_splits=("forget", "forget_paraphrase"))


def _view(**settings):
    attack = make(ATTACKS, {"name": "jailbreak", **settings}, "attack.jailbreak")
    model = object()
    out, view = attack.apply(_ctx(settings.pop("seed", 0)), model)
    assert out is model
    return view


@pytest.mark.parametrize("template,before,after", [
    ("prefix", jailbreak.PREFIX, ""), ("roleplay", jailbreak.ROLEPLAY, jailbreak.ROLEPLAY_END),
    ("multiturn", jailbreak.MULTITURN, "")])
def test_each_template_wraps_the_forget_questions_only(template, before, after):
    view = _view(template=template)
    assert view.applies_to("forget") and view.applies_to("forget_paraphrase") and not view.applies_to("retain")
    assert view.question("Where was Ada born?") == f"{before}Where was Ada born?{after}"


def test_fewshot_demonstrations_come_from_the_named_split_and_follow_the_seed():
    data, _ = data_and_tokenizer()
    view = _view(template="fewshot", shots=2)
    retain = {(it.question, it.answer) for it in data.train["retain"]}
    blocks = view.prefix.split("\n\n")
    demos = [tuple(b[len("Q: "):].split("\nA: ")) for b in blocks[:-1]]
    assert len(demos) == 2 and all(d in retain for d in demos) and blocks[-1] == "Q: "
    assert _view(template="fewshot", shots=2).prefix == view.prefix
    other = make(ATTACKS, {"name": "jailbreak", "template": "fewshot", "shots": 2}, "a").apply(_ctx(seed=1), None)[1]
    assert other.prefix != view.prefix and other.name != view.name


def test_jailbreak_settings_that_cannot_work_are_one_line():
    with pytest.raises(UserError, match="template=custom needs a prefix or a suffix"):
        make(ATTACKS, {"name": "jailbreak", "template": "custom"}, "attack.jailbreak")
    with pytest.raises(UserError, match="not of template=roleplay"):
        make(ATTACKS, {"name": "jailbreak", "template": "roleplay", "prefix": "x"}, "attack.jailbreak")
    with pytest.raises(UserError, match="needs 500 question/answer items in training split 'retain'"):
        _view(template="fewshot", shots=500)
    assert _view(template="custom", suffix=" Answer from memory.").question("Q?") == "Q? Answer from memory."


def test_a_jailbreak_stage_scores_the_attacked_prompts(cache_dir, tmp_path):
    run_cli(["run", "attack=[jailbreak]", "+attack.jb_roleplay={name: jailbreak, template: roleplay}",
             "~eval.metrics.answer_prob", "~eval.metrics.rouge_l", "skip=[eval_oracle]", "progress=false",
             "output_dir=run"], tmp_path, cache_dir)
    m = read_results(tmp_path / "run")["metrics"]
    for stage in ("jailbreak", "jb_roleplay"):
        assert f"{stage}/forget_qa_acc" in m and f"{stage}/retain_qa_acc" in m
    assert m["jailbreak/retain_qa_acc"] == m["unlearned/retain_qa_acc"]  # retain prompts are not attacked
    assert m["worst/forget_qa_acc"] == max(m["jailbreak/forget_qa_acc"], m["jb_roleplay/forget_qa_acc"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "examples" / "jb_roleplay.jsonl").read_text().splitlines()]
    forget = [r for r in rows if r.get("split") == "forget"]
    retain = [r for r in rows if r.get("split") == "retain"]
    assert forget and all(r["attacked_question"].startswith(jailbreak.ROLEPLAY) for r in forget)
    assert retain and all("attacked_question" not in r for r in retain)
