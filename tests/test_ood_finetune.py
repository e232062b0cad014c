"""The out-of-domain fine-tuning attack: it trains on its own data (generated arithmetic, or a local file) and not on
the forget set, lowering that data's loss; bad files are one line naming the culprit."""

from __future__ import annotations

import json

import pytest
import torch

from _method_fixtures import CPU, data_and_tokenizer, encode, tiny_model
from unlearn_cli.attacks.context import AttackContext
from unlearn_cli.attacks.ood_finetune import arithmetic_items
from unlearn_cli.components import make
from unlearn_cli.errors import UserError
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.registry import ATTACKS


def _nll(model, encoded) -> float:
    with torch.no_grad():
        return float(answer_forward(model, encoded.batch(range(len(encoded)), 0)).mean_nll())


def _attack(**settings):
    return make(ATTACKS, {"name": "ood_finetune", "precision": "fp32", "steps": 15, "lr": 3e-3, **settings},
                "attack.ood_finetune")


def test_arithmetic_data_is_generated_deterministically_and_correct():
    items = arithmetic_items(50, seed=3)
    assert items == arithmetic_items(50, seed=3) and items != arithmetic_items(50, seed=4)
    for item in items:
        a, word, b = item.question[len("What is "):-1].split(" ")
        assert int(item.value) == (int(a) + int(b) if word == "plus" else int(a) - int(b))
        assert item.answer == f"{a} {word} {b} is {item.value}."


@pytest.mark.parametrize("source", ["arithmetic", "file"])
def test_ood_finetune_lowers_the_loss_of_its_own_data_and_never_sees_the_forget_set(source, tmp_path):
    _, tok = data_and_tokenizer()
    data = "arithmetic"
    if source == "file":
        data = str(tmp_path / "gsm8k_like.jsonl")
        rows = [{"question": f"Tom has {i} apples and buys {i + 2} more. How many?", "answer": str(2 * i + 2)}
                for i in range(40)]
        (tmp_path / "gsm8k_like.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    attack = _attack(data=data, num_samples=32)
    attack.check(CPU)
    seen = []
    ctx = AttackContext({}, tok, 0, tok.pad_token_id, CPU, lambda *a: None, "ood", encode=lambda items: (
        seen.extend(items) or encode(items)))
    own = encode(attack.items(0))
    model = tiny_model()
    before = _nll(model, own)
    out, view = attack.apply(ctx, model)
    assert out is model and view is None and len(seen) == 32
    data_forget, _ = data_and_tokenizer()
    forget_questions = {item.question for item in data_forget.train["forget"]}
    assert not forget_questions & {item.question for item in seen}
    assert _nll(model, own) < 0.8 * before


def test_bad_ood_data_is_one_line_naming_it(tmp_path):
    with pytest.raises(UserError, match=r"data '.*missing.jsonl' is not a file"):
        _attack(data=str(tmp_path / "missing.jsonl")).check(CPU)
    (tmp_path / "sst2.jsonl").write_text(json.dumps({"sentence": "great film", "label": 1}))
    with pytest.raises(UserError, match=r"record 0 of .* has no field 'question' \(fields: sentence, label"):
        _attack(data=str(tmp_path / "sst2.jsonl")).items(0)
    items = _attack(data=str(tmp_path / "sst2.jsonl"), question_field="sentence", answer_field="label").items(0)
    assert [(i.question, i.answer) for i in items] == [("great film", "1")]
