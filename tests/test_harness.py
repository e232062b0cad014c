"""mcq_acc through lm-evaluation-harness on the in-memory tiny model: same items, same prompt, same
accuracy as the native scoring core (zero-shot and MMLU 5-shot); bad settings fail with one line."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from _method_fixtures import SPEC, FORMAT, data_and_tokenizer, tiny_model
from unlearn_cli.data.benchmarks.mmlu import Mmlu
from unlearn_cli.data.loaders import corpus_of
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.errors import UserError
from unlearn_cli.metrics.mcq_acc import MCQAccuracy
from unlearn_cli.models.build import build_tiny
from unlearn_cli.eval.decode import DecodeSettings
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.eval.scorer import StageScorer


def scorer_with_wmdp_named_split():
    data, tok = data_and_tokenizer()
    mcq = {"wmdp_bio": data.mcq["forget_mcq"][:24], "retain_mcq": data.mcq["retain_mcq"][:16]}
    torch.manual_seed(0)
    inputs = EvalInputs(tok, FORMAT, {}, mcq, {})
    return StageScorer(tiny_model().eval(), inputs, DecodeSettings(batch_size=8), contextlib.nullcontext, "target")


def test_harness_backend_matches_the_native_letter_scores():
    scorer = scorer_with_wmdp_named_split()
    native = MCQAccuracy(splits=None)
    native.resolve(scorer.inputs)
    want = native.compute(scorer)
    harness = MCQAccuracy(splits=None, backend="lm_eval")
    harness.resolve(scorer.inputs)
    got = harness.compute(scorer)
    assert set(got) == set(want) == {"wmdp_bio_mcq_acc", "retain_mcq_acc"}
    # the native decision margins: where the top two letters are not nearly tied, both must agree
    for split in ("wmdp_bio", "retain_mcq"):
        lp = scorer.mcq_logprobs(split).numpy()
        top2 = np.sort(lp, axis=1)[:, -2:]
        assert (top2[:, 1] - top2[:, 0] > 1e-3).all(), "near-tie: pick another seed for this test"
    assert got == pytest.approx(want, abs=1e-9)


def test_harness_options_are_validated_before_anything_runs():
    with pytest.raises(UserError, match="backend must be native or lm_eval"):
        MCQAccuracy(backend="harness")
    with pytest.raises(UserError, match="needs backend=lm_eval"):
        MCQAccuracy(harness_tasks={"wmdp_bio": "wmdp_bio"})
    scorer = scorer_with_wmdp_named_split()
    metric = MCQAccuracy(splits=["wmdp_bio"], backend="lm_eval", harness_tasks={"wmdp_bio": "wmdp_biology"})
    with pytest.raises(UserError, match="lm-eval has no task 'wmdp_biology'"):
        metric.compute(scorer)


@pytest.fixture(scope="module")
def mmlu_scorer():
    """Tiny model + tokenizer on two real MMLU subjects (4 test items each, their 5 dev rows)."""
    data = Mmlu(subjects=["astronomy", "virology"], max_per_subject=4).load()
    tok = train_bpe_tokenizer(corpus_of(data.mcq), 512)
    torch.manual_seed(0)
    model = build_tiny(SPEC, len(tok), tok, 1).eval()
    return StageScorer(model, EvalInputs(tok, FORMAT, {}, data.mcq, {}), DecodeSettings(batch_size=8),
                       contextlib.nullcontext, "target")


def test_five_shot_mmlu_prompt_is_the_subject_header_five_dev_rows_then_the_question(mmlu_scorer):
    inputs = mmlu_scorer.inputs
    item = inputs.mcq["mmlu"][4]  # first virology test item
    dev = [d for d in inputs.mcq["mmlu_dev"] if d.entity == "virology"]
    assert item.entity == "virology" and len(dev) == 5

    def block(it):
        return it.question.strip() + "".join(f"\n{L}. {c}" for L, c in zip("ABCD", it.choices)) + "\nAnswer:"
    want = ("The following are multiple choice questions (with answers) about virology.\n\n"
            + "".join(block(d) + " " + "ABCD"[d.answer] + "\n\n" for d in dev) + block(item))
    assert inputs.mcq_texts("mmlu", 5)[4] == want
    assert inputs.mcq_texts("mmlu", 0)[4] == want[:want.index("\n\n") + 2] + block(item)
    metric = MCQAccuracy(splits=None, num_fewshot={"mmlu": 5})
    metric.resolve(inputs)
    assert metric.splits == ["mmlu"]  # the few-shot pool is not evaluated as a split


def test_five_shot_mmlu_accuracy_is_the_same_natively_and_through_the_harness(mmlu_scorer):
    context = mmlu_scorer.model.config.max_position_embeddings
    prompts, _ = mmlu_scorer.inputs.mcq_prompts("mmlu", 5)
    assert all(len(p) > context for p in prompts)  # both paths keep each prompt's last `context` tokens
    native = MCQAccuracy(splits=["mmlu"], num_fewshot=5).compute(mmlu_scorer)
    harness = MCQAccuracy(splits=["mmlu"], num_fewshot=5, backend="lm_eval").compute(mmlu_scorer)
    lp = mmlu_scorer.mcq_logprobs("mmlu", 5).numpy()
    top2 = np.sort(lp, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0] > 1e-3).all(), "near-tie: pick another seed for this test"
    assert not np.allclose(lp, mmlu_scorer.mcq_logprobs("mmlu", 0).numpy())  # the demonstrations matter
    assert harness == pytest.approx(native, abs=1e-9) and set(native) == {"mmlu_mcq_acc"}


def test_few_shot_settings_fail_with_one_line(mmlu_scorer):
    with pytest.raises(UserError, match="num_fewshot must be an int >= 0"):
        MCQAccuracy(num_fewshot=-1)
    with pytest.raises(UserError, match="few-shot pool 'mmlu_dev' has 5 items of subject 'astronomy'; lower"):
        mmlu_scorer.inputs.mcq_texts("mmlu", 6)
    with pytest.raises(UserError, match="no multiple-choice split to evaluate .*splits: mmlu, mmlu_dev"):
        MCQAccuracy(splits=[]).resolve(mmlu_scorer.inputs)
    metric = MCQAccuracy(splits=["mmlu"], num_fewshot={"wmdp_bio": 5})
    with pytest.raises(UserError, match="names split 'wmdp_bio', which is not evaluated; evaluated: mmlu"):
        metric.resolve(mmlu_scorer.inputs)
    scorer = scorer_with_wmdp_named_split()
    with pytest.raises(UserError, match="split 'wmdp_bio' has no few-shot pool 'wmdp_bio_dev'"):
        MCQAccuracy(splits=["wmdp_bio"], num_fewshot=5).compute(scorer)


@pytest.mark.parametrize("adds_bos", [True, False], ids=["tokenizer-adds-bos", "tokenizer-adds-nothing"])
def test_native_letter_log_likelihoods_equal_the_harness_item_by_item(adds_bos):
    """The native MCQ context is encoded as lm-eval's HFLM encodes it -- with the tokenizer's own special tokens --
    so every item's four letter log-likelihoods agree, whether or not the tokenizer prepends <bos>."""
    from copy import deepcopy

    from unlearn_cli.eval.harness import harness_accuracy
    data, tok = data_and_tokenizer()
    if not adds_bos:
        tok = deepcopy(tok)
        tok._tokenizer.post_processor = None  # a GPT-2-like tokenizer: no <bos> unless asked
    items = data.mcq["forget_mcq"][:12]
    inputs = EvalInputs(tok, FORMAT, {}, {"quiz_mcq": items}, {})
    prompts, _ = inputs.mcq_prompts("quiz_mcq")
    assert (prompts[0][0] == tok.bos_token_id) == adds_bos
    torch.manual_seed(0)
    scorer = StageScorer(tiny_model().eval(), inputs, DecodeSettings(batch_size=8), contextlib.nullcontext, "target")
    native = scorer.mcq_logprobs("quiz_mcq").numpy()
    _, loglik = harness_accuracy(scorer.model, tok, {"quiz_mcq": (inputs.mcq_texts("quiz_mcq"), items)}, {}, 8)
    np.testing.assert_allclose(native, loglik["quiz_mcq"], atol=2e-5)
