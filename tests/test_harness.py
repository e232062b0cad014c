"""mcq_acc through lm-evaluation-harness on the in-memory tiny model: same items, same prompt, same
accuracy as the native scoring core; bad settings fail with one line."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from _method_fixtures import TEMPLATE, data_and_tokenizer, tiny_model
from unlearn_cli.errors import UserError
from unlearn_cli.metrics.mcq_acc import MCQAccuracy
from unlearn_cli.scoring import DecodeSettings, EvalInputs, StageScorer


def scorer_with_wmdp_named_split():
    data, tok = data_and_tokenizer()
    mcq = {"wmdp_bio": data.mcq["forget_mcq"][:24], "retain_mcq": data.mcq["retain_mcq"][:16]}
    torch.manual_seed(0)
    inputs = EvalInputs(tok, TEMPLATE, {}, mcq, {})
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
