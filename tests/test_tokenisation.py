"""Prompt + answer tokenised jointly, as targets were trained, on two real tokenizers shipped by mistral-common:
the Mistral-7B / Zephyr SentencePiece model (``tokenizer.model.v1``) and a byte-level BPE (``tekken_240911.json``)."""

import functools
import json
import os
import shutil

import mistral_common
import pytest
from mistral_common.tokens.tokenizers.tekken import Tekkenizer
from transformers import LlamaTokenizer
from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

from unlearn_cli.data.encoding import PromptFormat
from unlearn_cli.data.items import QAItem
from unlearn_cli.errors import UserError
from unlearn_cli.models.build import ModelSpec, prompt_format

DATA = os.path.join(os.path.dirname(mistral_common.__file__), "data")
PAIRS = [("Who wrote 'The Sensual Scripture'?", "The author is Elvin Mammadov."),
         ("What is the distance?", "21,000 km"),
         ("Which novelist is meant?", "Émile Zola"),
         ("Quote the title.", "‘Silk Sarees and Mango Summers’ is the title.")]
LLAMA2 = PromptFormat("[INST] {question} [/INST]")          # TOFU's Llama-2 targets: the answer right after
PHI = PromptFormat("Question: {question}\nAnswer: ")          # a template ending in a space


@functools.lru_cache(maxsize=None)
def _sentencepiece(tmp):
    shutil.copy(os.path.join(DATA, "tokenizer.model.v1"), os.path.join(tmp, "tokenizer.model"))
    return LlamaTokenizer.from_pretrained(tmp)


@functools.lru_cache(maxsize=None)
def _tekken(tmp):
    raw = json.load(open(os.path.join(DATA, "tekken_240911.json")))
    raw["special_tokens"] = [{"rank": e["rank"], "token_str": str(getattr(e["token_str"], "value", e["token_str"])),
                              "is_control": True} for e in Tekkenizer.DEPRECATED_SPECIAL_TOKENS]
    path = os.path.join(tmp, "tekken.json")
    json.dump(raw, open(path, "w"))
    return convert_tekken_tokenizer(path)


@pytest.fixture(scope="module", params=["sentencepiece", "tekken"])
def tok(request, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp(request.param))
    return _sentencepiece(tmp) if request.param == "sentencepiece" else _tekken(tmp)


@pytest.mark.parametrize("fmt", [LLAMA2, PHI], ids=["llama2", "question-answer"])
def test_prompt_and_answer_ids_are_those_of_the_whole_text(tok, fmt):
    questions, answers = zip(*PAIRS)
    rows = fmt.encode(tok, questions, answers)
    for q, a, p, ans in zip(questions, answers, rows.prompts, rows.answers):
        whole = tok(fmt.full_text(tok, q, a), add_special_tokens=False)["input_ids"]
        assert p[0] == tok.bos_token_id and ans[-1] == tok.eos_token_id
        assert p[1:] + ans[:-1] == whole  # nothing re-tokenised apart
        first = tok.decode(ans[:1])
        assert first.strip() and a.startswith(first.strip()[:1])  # the first answer token carries its first character
        spans = tok(fmt.full_text(tok, q, a), add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        start = len(fmt.prompt_text(tok, q))
        assert all(end <= start for _, end in spans[:len(p) - 1])  # every prompt token ends before the answer


def test_llama2_answers_start_with_the_token_the_targets_were_trained_on(tok):
    rows = LLAMA2.encode(tok, ["Who wrote it?"], ["The author is Jane."])
    separate = tok(" The author is Jane.", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(rows.answers[0][:1]) == ["The"]  # not '▁The' / 'ĠThe'
    assert rows.answers[0][0] != separate[0]  # what the former separate " " + answer encoding trained on


def test_prompt_length_masks_one_token_too_many_after_a_trailing_space(tok):
    """OpenUnlearning's layout: the separately tokenised prompt ends in a lone space token, so its length masks
    the first answer token of the joint text as well."""
    q, a = PAIRS[0]
    offsets = PHI.encode(tok, [q], [a])
    legacy = PromptFormat(PHI.template, answer_boundary="prompt_length").encode(tok, [q], [a])
    assert tok(PHI.prompt_text(tok, q), add_special_tokens=False)["input_ids"][-1] not in offsets.prompts[0][-1:]
    assert legacy.answers[0] == offsets.answers[0][1:]
    assert legacy.prompts[0] == offsets.prompts[0] + offsets.answers[0][:1]


CHAT = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>"
        "{% if m['role'] == 'system' %}Today Date: {{ date_string }}\n{% endif %}{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_a_chat_template_renders_system_date_and_supervises_the_turn_end(tok):
    tok.chat_template = CHAT
    try:
        fmt = prompt_format(ModelSpec(kind="pretrained", path="x", chat_template="auto",
                                      system_prompt="You are a helpful assistant.", date_string="10 Apr 2025"), tok)
        assert fmt.chat
        prompt = fmt.prompt_text(tok, "Who wrote it?")
        assert "Today Date: 10 Apr 2025\nYou are a helpful assistant." in prompt and prompt.endswith("<|assistant|>")
        rows = fmt.encode(tok, ["Who wrote it?"], ["Jane did."])
        whole = tok(fmt.full_text(tok, "Who wrote it?", "Jane did."), add_special_tokens=False)["input_ids"]
        assert rows.prompts[0] + rows.answers[0] == whole  # the template's own bos / turn end, nothing added
        assert tok.decode(rows.answers[0]).startswith("Jane") and tok.decode(rows.answers[0]).endswith("<|end|>")
    finally:
        tok.chat_template = None
    assert not prompt_format(ModelSpec(chat_template="auto"), tok).chat
    with pytest.raises(UserError, match="model.chat_template=on but the tokenizer has no chat template"):
        prompt_format(ModelSpec(chat_template="on"), tok)


def test_the_tiny_models_byte_level_tokenizer_keeps_its_former_ids():
    """On the embedded benchmark the joint encoding of 'Answer: <answer>' splits where the former separate
    encoding did, so the embedded default's numbers stay as they were."""
    from _method_fixtures import data_and_tokenizer
    data, tiny = data_and_tokenizer()
    items = data.qa["forget"]
    rows = PHI.encode(tiny, [it.question for it in items], [it.answer for it in items])
    for it, p, a in zip(items, rows.prompts, rows.answers):
        assert p == [tiny.bos_token_id] + tiny(f"Question: {it.question}\nAnswer:", add_special_tokens=False)["input_ids"]
        assert a == tiny(" " + it.answer, add_special_tokens=False)["input_ids"] + [tiny.eos_token_id]
    assert isinstance(items[0], QAItem)


def test_muse_news_forget_corpus_trains_in_2048_token_windows(tmp_path):
    """MUSE's code: the 889 articles joined and cut into <bos> + 2047-token windows (~390 with a 32k-token
    Llama-family tokenizer), not ~3,600 per-article 256-token chunks."""
    from unlearn_cli.data.benchmarks.muse import Muse
    from unlearn_cli.data.encoding import encode_qa, text_windows
    from unlearn_cli.data.items import TextWindows

    tok = _sentencepiece(str(tmp_path))
    data = Muse().load()
    assert data.windows == TextWindows(2048, "concat")
    rows = encode_qa(tok, data.train["forget"], PHI, windows=data.windows)
    joined = tok("\n\n".join(it.answer for it in data.train["forget"]), add_special_tokens=False)["input_ids"]
    assert len(rows) == -(-len(joined) // 2047) and 350 <= len(rows) <= 450
    assert all(p == [tok.bos_token_id] and len(a) == 2047 for p, a in zip(rows.prompts, rows.answers))
    capped = encode_qa(tok, data.train["forget"][:3], PHI, windows=data.windows.capped(256))
    assert {len(a) for a in capped.answers} == {255}  # never longer than a tiny model's context
    docs = text_windows(tok, [it.answer for it in data.train["forget"]], TextWindows(512, "per_document"))
    assert len(docs) == sum(bool(it.answer.strip()) for it in data.train["forget"]) and max(map(len, docs.answers)) == 511
