"""Scoring core and metric modules on a tiny model with known answers."""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import numpy as np
import pytest
import torch
from scipy import stats

from _method_fixtures import FORMAT, data_and_tokenizer, tiny_model
from unlearn_cli.data.encoding import encode_texts, render_mcq
from unlearn_cli.eval import scorer as scoring
from unlearn_cli.eval import stats as _stats
from unlearn_cli.metrics.forget_quality import ForgetQuality
from unlearn_cli.metrics.knowmem import KnowMem, cut
from unlearn_cli.metrics.leak_at_k import LeakAtK
from unlearn_cli.metrics.mcq_acc import MCQAccuracy
from unlearn_cli.metrics.open_qa import OpenQA
from unlearn_cli.metrics.privleak import PrivLeak
from unlearn_cli.metrics.qa_acc import QAAccuracy
from unlearn_cli.metrics.rouge_l import RougeL
from unlearn_cli.metrics.truth_ratio import TruthRatio
from unlearn_cli.metrics.verbmem import VerbMem
from unlearn_cli.eval.decode import DecodeSettings
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.eval.ops import mcq_logprobs
from unlearn_cli.eval.scorer import Baselines, StageScorer

NULL = contextlib.nullcontext


def make_inputs():
    data, tok = data_and_tokenizer()
    return EvalInputs(tok, FORMAT, {k: v[:12] for k, v in data.qa.items()}, data.mcq, data.texts)


def make_scorer(batch_size=7, stage="target", baselines=None, model=None, **decode):
    torch.manual_seed(0)
    model = model or tiny_model().eval()
    return StageScorer(model, make_inputs(), DecodeSettings(batch_size=batch_size, **decode), NULL, stage, baselines)


def oracle_baselines(memo: dict) -> Baselines:
    """Baselines whose (frozen) oracle stage memoised exactly ``memo``."""
    oracle = StageScorer(None, make_inputs(), DecodeSettings(), NULL, "oracle")
    oracle._memo.update(memo)
    baselines = Baselines()
    baselines.add(oracle)
    return baselines


@torch.no_grad()
def brute_logp(model, prefix, continuation):
    """Summed log p(continuation | prefix) from one unpadded forward."""
    ids = torch.tensor([list(prefix) + list(continuation)])
    logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    return sum(float(logp[len(prefix) - 1 + i, t]) for i, t in enumerate(continuation))


@pytest.mark.parametrize("fast_path", [True, False])
def test_mcq_letter_scores_match_a_forward_per_choice(fast_path):
    scorer = make_scorer(batch_size=3)
    data, tok = data_and_tokenizer()
    items = data.mcq["forget_mcq"][:5]
    prompts, n = scorer.inputs.mcq_prompts("forget_mcq")
    got = mcq_logprobs(scorer.model, tok, prompts[:5], n, 3, NULL, fast_path=fast_path)
    for i, it in enumerate(items):
        prompt = [tok.bos_token_id] + tok(render_mcq(it.question, it.choices), add_special_tokens=False)["input_ids"]
        assert prompt == prompts[i]
        for c, letter in enumerate("ABCD"):
            cont = tok(" " + letter, add_special_tokens=False)["input_ids"]
            assert got[i, c].item() == pytest.approx(brute_logp(scorer.model, prompt, cont), abs=1e-4)


def test_mcq_acc_is_the_argmax_accuracy_and_names_its_keys():
    scorer = make_scorer()
    metric = MCQAccuracy(splits=None)
    metric.resolve(scorer.inputs)
    out = metric.compute(scorer)
    assert set(out) == {"forget_mcq_acc", "retain_mcq_acc", "holdout_mcq_acc"}
    pred = scorer.mcq_logprobs("retain_mcq").argmax(-1).numpy()
    gold = np.array([it.answer for it in scorer.mcq["retain_mcq"]])
    assert out["retain_mcq_acc"] == pytest.approx(float((pred == gold).mean()))


def test_perturbed_answer_nlls_match_single_forwards_and_are_shared():
    scorer = make_scorer(batch_size=5)
    _, tok = data_and_tokenizer()
    sums, counts = scorer.answer_nll("forget", "perturbed")
    assert sums.shape == (12, 3)
    prompts = scorer.inputs.prompts("forget")
    for i in (0, 7):
        for j in range(3):
            ans = tok(" " + scorer.items["forget"][i].perturbed[j], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            assert -sums[i, j].item() == pytest.approx(brute_logp(scorer.model, prompts[i], ans), abs=1e-3)
            assert counts[i, j].item() == len(ans)
    assert scorer.answer_nll("forget", "perturbed") is scorer.answer_nll("forget", "perturbed")


def test_token_stats_give_log_probs_and_min_k_pp_moments_of_one_forward():
    scorer = make_scorer(batch_size=2)
    _, tok = data_and_tokenizer()
    stats_ = scorer.token_stats("forget_bios")
    text = scorer.texts["forget_bios"][1]
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"][:512]
    with torch.no_grad():
        logits = scorer.model(input_ids=torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.double(), -1)
    want = np.array([float(logp[t - 1, ids[t]]) for t in range(1, len(ids))])
    mu, sigma = _stats.logit_moments(logits[:-1])
    np.testing.assert_allclose(stats_[1].logp, want, atol=1e-4)
    np.testing.assert_allclose(stats_[1].mu, mu.numpy(), atol=1e-4)
    np.testing.assert_allclose(stats_[1].sigma, sigma.numpy(), atol=1e-4)
    assert scorer.token_stats("forget_bios") is stats_  # memoised: one forward per split and stage


def test_gold_answer_nlls_and_qa_token_stats_share_one_forward_per_split():
    scorer = make_scorer(batch_size=5)
    _, tok = data_and_tokenizer()
    calls = []
    hook = scorer.model.register_forward_hook(lambda *_: calls.append(1))
    sums, counts = scorer.answer_nll("forget")
    stats_ = scorer.token_stats("forget")
    scorer.mean_nll("forget")
    hook.remove()
    assert len(calls) == 3  # 12 rows in batches of 5: one pass serves the NLLs and the MIA statistics
    prompts = scorer.inputs.prompts("forget")
    for i in (0, 11):
        ans = tok(" " + scorer.items["forget"][i].answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert -sums[i].item() == pytest.approx(brute_logp(scorer.model, prompts[i], ans), abs=1e-3)
        assert counts[i].item() == len(ans) == len(stats_[i].logp)


def test_paraphrased_answer_request_on_a_split_without_paraphrases_reuses_the_gold_pass():
    data, tok = data_and_tokenizer()
    plain = [dataclasses.replace(it, paraphrased_answer="") for it in data.qa["retain"][:6]]
    inputs = EvalInputs(tok, FORMAT, {"retain": plain}, {}, {})
    scorer = StageScorer(tiny_model().eval(), inputs, DecodeSettings(batch_size=8), NULL, "target")
    assert scorer.answer_nll("retain", "paraphrased_answer") is scorer.answer_nll("retain")


class KnownNLLs(StageScorer):
    """A scorer whose answer NLLs are fixed (2 items, 2 perturbed answers): the real truth-ratio code on top."""

    def __init__(self, stage="unlearned", baselines=None):
        super().__init__(None, make_inputs(), DecodeSettings(), NULL, stage, baselines)
        self.base = np.array([1.0, 3.0])
        self.pert = torch.tensor([[2.0, 4.0], [1.0, 1.0]], dtype=torch.float64)

    def mean_nll(self, split, field="answer", view="question"):
        assert field == "paraphrased_answer"
        return self.base

    def answer_nll(self, split, field="answer", view="question"):
        assert field == "perturbed"
        return self.pert * 2, torch.full_like(self.pert, 2.0)  # summed over 2 tokens each


def test_truth_ratio_from_known_nlls():
    r = np.exp(np.array([1.0 - 3.0, 3.0 - 1.0]))  # exp(l_base - mean l_pert)
    out = TruthRatio(splits=["forget", "retain"]).compute(KnownNLLs())
    assert out["forget_truth_ratio"] == pytest.approx(np.minimum(r, 1 / r).mean())
    assert out["retain_truth_ratio"] == pytest.approx(np.maximum(0, 1 - r).mean())


def test_forget_quality_compares_with_the_oracle_and_is_omitted_without_one(caplog):
    assert ForgetQuality().compute(KnownNLLs(stage="oracle")) == {"forget_quality": 1.0}  # the oracle vs itself
    ref = np.array([5.0, 6.0, 7.0])
    got = ForgetQuality().compute(KnownNLLs(baselines=oracle_baselines({("truth_ratio", "forget"): ref})))
    assert got["forget_quality"] == pytest.approx(stats.ks_2samp(np.exp([-2.0, 2.0]), ref).pvalue)
    with caplog.at_level(logging.WARNING, logger="unlearn_cli"):
        assert ForgetQuality().compute(KnownNLLs()) == {}
    assert "forget_quality" in caplog.text and "omitted" in caplog.text


def test_a_frozen_baseline_refuses_what_its_stage_did_not_compute():
    baselines = oracle_baselines({})
    with pytest.raises(RuntimeError, match="baseline stage 'oracle' did not compute"):
        baselines.get("oracle").truth_ratios("forget")
    assert baselines.get("target") is None
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.get("retrained")


def test_privleak_uses_the_oracle_auc_else_the_constant():
    scorer = make_scorer(batch_size=4)
    scorer.inputs.texts.update(privleak_forget=scorer.texts["forget_bios"], privleak_holdout=scorer.texts["holdout_bios"])
    out = PrivLeak(oracle_auc=0.4772).compute(scorer)
    assert 0 <= out["forget_privleak_auc"] <= 1
    assert out["forget_privleak"] == pytest.approx((out["forget_privleak_auc"] - 0.4772) / 0.4772 * 100)
    key = ("mia_auc", "privleak_forget", "privleak_holdout", "min_k", 0.4, None)
    assert scorer._memo[key] == out["forget_privleak_auc"]  # the typed accessor's memo entry
    other = make_scorer(batch_size=4, baselines=oracle_baselines({key: 0.25}))
    other.inputs.texts.update(scorer.inputs.texts)
    assert other.inputs is not scorer.inputs
    assert PrivLeak(oracle_auc=0.4772).compute(other)["forget_privleak"] == \
        pytest.approx((out["forget_privleak_auc"] - 0.25) / 0.25 * 100)
    degenerate = make_scorer(batch_size=4, baselines=oracle_baselines({key: 0.0}))  # oracle ranked members first
    degenerate.inputs.texts.update(scorer.inputs.texts)
    assert set(PrivLeak().compute(degenerate)) == {"forget_privleak_auc"}


def test_leak_at_k_with_top_k_1_equals_greedy_containment():
    """top_k=1 sampling is greedy, so every query leaks in all n samples or none: leak@k = qa_acc."""
    scorer = make_scorer(batch_size=16, max_new_tokens=8)
    metric = LeakAtK(splits=["forget"], n=4, ks=[1, 4], top_k=1, judge="contains")
    out = metric.compute(scorer)
    acc = QAAccuracy(splits=["forget"]).compute(scorer)["forget_qa_acc"]
    assert out["forget_leak@1"] == pytest.approx(acc) and out["forget_leak@4"] == pytest.approx(acc)
    counts = scorer.artifacts["leak_at_k"]["forget"]["T=1,top_p=1"]["counts"]
    assert len(counts) == 12 and set(counts) <= {0, 4}


def test_leak_at_k_sampling_is_seeded_batched_and_monotone_in_k():
    a = make_scorer(batch_size=16, max_new_tokens=6)
    b = make_scorer(batch_size=5, max_new_tokens=6)  # other batching (1 prompt x 4 samples per call)
    metric = LeakAtK(splits=["forget"], n=4, ks=[1, 2, 4], judge="rouge", threshold=0.2, max_items=6)
    sa = a.samples("forget", metric_sampling(metric), limit=6)
    assert len(sa) == 6 and all(len(s) == 4 for s in sa)
    out = metric.compute(a)
    assert out["forget_leak@1"] <= out["forget_leak@2"] <= out["forget_leak@4"]
    again = make_scorer(batch_size=16, max_new_tokens=6).samples("forget", metric_sampling(metric), limit=6)
    assert again == sa  # same seed, same batching: same samples
    assert [len(s) for s in b.samples("forget", metric_sampling(metric), limit=6)] == [4] * 6


def metric_sampling(metric):
    from unlearn_cli.eval.decode import Sampling
    return Sampling(metric.n, 1.0, 1.0, 0)


def test_raw_text_windows_concat_and_per_document():
    from unlearn_cli.data.encoding import text_windows
    from unlearn_cli.data.items import TextWindows
    _, tok = data_and_tokenizer()
    texts = [" ".join(["alpha beta gamma"] * 20), "delta epsilon " * 9]
    joined = tok("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    enc = text_windows(tok, texts, TextWindows(17, "concat"))  # <bos> + 16 tokens per window
    assert all(p == [tok.bos_token_id] for p in enc.prompts) and all(len(a) == 16 for a in enc.answers)
    assert len(enc) == -(-len(joined) // 16)
    flat = [t for a in enc.answers for t in a]
    assert flat[:len(joined)] == joined and flat[len(joined):] == joined[:len(flat) - len(joined)]  # wrapped
    docs = text_windows(tok, texts, TextWindows(9, "per_document"))
    assert docs.answers == [tok(t, add_special_tokens=False)["input_ids"][:8] for t in texts]
    batch = enc.batch([0], tok.pad_token_id)
    assert (batch["labels"][0, 1:] != -100).all()
    whole = encode_texts(tok, texts)  # membership inference scores every text whole, one row each
    assert whole.answers == [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_knowmem_cut_and_judges():
    assert cut("Paris\n\nQuestion: next") == "Paris"
    assert cut("Rome\nQuestion: x") == "Rome"
    assert cut("Oslo Question: y") == "Oslo"
    from unlearn_cli.data.items import QAItem
    from unlearn_cli.metrics._common import leaks
    short = QAItem("q", "He was born in Velwick.", "Velwick")
    assert leaks("auto", 0.5, "velwick, of course", short) and not leaks("auto", 0.5, "Velwickshire", short)
    full = QAItem("q", "the author writes crime novels", "the author writes crime novels")
    assert leaks("auto", 0.5, "she writes crime novels", full) and not leaks("auto", 0.5, "poems", full)


def test_prefetch_pools_every_declared_greedy_request_into_one_generate_call(monkeypatch):
    data, tok = data_and_tokenizer()
    qa = {k: v[:12] for k, v in data.qa.items()}
    qa.update(knowmem_forget=qa["forget"], knowmem_forget_icl=qa["retain"][:2], verbmem_forget=qa["holdout"])
    metrics = [QAAccuracy(["forget", "retain", "holdout"]), RougeL(["forget", "retain"]), OpenQA(["retain"]),
               KnowMem(["knowmem_forget"], max_new_tokens=6), VerbMem(["verbmem_forget"], max_new_tokens=6)]
    torch.manual_seed(0)
    model = tiny_model().eval()

    def scorer():
        return StageScorer(model, EvalInputs(tok, FORMAT, qa), DecodeSettings(batch_size=64, max_new_tokens=8),
                           NULL, "target")
    calls = []
    real = scoring.generate
    monkeypatch.setattr(scoring, "generate", lambda m, t, prompts, mnt, *a, **k: calls.append((len(prompts), mnt))
                        or real(m, t, prompts, mnt, *a, **k))
    pooled = scorer()
    pooled.prefetch(metrics)
    # one call per max_new_tokens: 3 question splits (36 prompts) at 8 tokens, knowmem + verbmem at 6
    assert sorted(calls) == [(24, 6), (36, 8)]
    values = {}
    for metric in metrics:
        values.update(metric.compute(pooled))
    assert len(calls) == 2  # every request was declared: compute generated nothing more
    calls.clear()
    alone = scorer()
    assert {k: alone_v for m in metrics for k, alone_v in m.compute(alone).items()} == values
    assert len(calls) == 5  # without prefetch: one call per (split, view)
    for key in [k for k in alone._memo if k[0] == "gen"]:
        assert pooled._memo[key] == alone._memo[key]  # pooling changes batches, not greedy answers
