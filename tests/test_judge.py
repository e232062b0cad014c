"""Open-QA and leak@k with an entailment (NLI) judge: the metric equals an independent computation
with the same classifier; a classifier without an entailment class, or a missing judge model, fails
with one line."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from _method_fixtures import FORMAT, data_and_tokenizer, tiny_model
from unlearn_cli.errors import UserError
from unlearn_cli.eval import stats as _stats
from unlearn_cli.metrics import _entailment
from unlearn_cli.metrics.leak_at_k import LeakAtK
from unlearn_cli.metrics.open_qa import OpenQA
from unlearn_cli.eval.decode import DecodeSettings
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.eval.scorer import StageScorer

LABELS = {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}


def save_classifier(path, labels=LABELS):
    _, tok = data_and_tokenizer()
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id,
                      num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()})
    LlamaForSequenceClassification(cfg).save_pretrained(path)  # safetensors
    tok.save_pretrained(path)
    return str(path)


def p_entail(path, premise, hypothesis):
    """One unbatched forward of the classifier: P(label 0 = entailment)."""
    judge = _entailment.load_judge(path)
    enc = judge.tokenizer(premise, hypothesis, return_tensors="pt")
    with torch.no_grad():
        return float(torch.softmax(judge.model(**enc).logits.double(), -1)[0, 0])


def scorer(n_items=10):
    data, tok = data_and_tokenizer()
    inputs = EvalInputs(tok, FORMAT, {"forget": data.qa["forget"][:n_items]}, {}, {})
    return StageScorer(tiny_model().eval(), inputs, DecodeSettings(batch_size=16, max_new_tokens=8),
                       contextlib.nullcontext, "target")


def test_open_qa_is_the_rouge_gate_without_a_judge_and_gate_and_entailment_with_one(tmp_path):
    path = save_classifier(tmp_path / "nli")
    s = scorer()
    gens, items = s.generations("forget"), s.items["forget"]
    recall = np.array([_stats.rouge_l(g, it.answer, True)[0] for g, it in zip(gens, items)])
    gate = float(np.median(recall))
    assert OpenQA(splits=["forget"], gate=gate).compute(s)["forget_open_qa"] == pytest.approx(
        float((recall >= gate).mean()))
    probs = np.array([p_entail(path, f"{it.question} {g}", f"{it.question} {it.answer}") for g, it in zip(gens, items)])
    threshold = float(np.median(probs))  # half the answers pass the judge
    want = float(((recall >= 0.0) & (probs >= threshold)).mean())
    got = OpenQA(splits=["forget"], gate=0.0, judge_model=path, threshold=threshold).compute(s)["forget_open_qa"]
    assert got == pytest.approx(want) and 0 < got < 1


def test_leak_at_k_nli_counts_the_samples_the_judge_confirms(tmp_path):
    from unlearn_cli.eval.decode import Sampling
    path = save_classifier(tmp_path / "nli")
    s = scorer(n_items=4)
    samples = s.samples("forget", Sampling(4))  # memoised: the metric below reuses these samples
    probs = [[p_entail(path, f"{it.question} {g}", f"{it.question} {it.answer}") for g in gens]
             for gens, it in zip(samples, s.items["forget"])]
    threshold = float(np.median(probs))
    metric = LeakAtK(splits=["forget"], n=4, ks=[1, 4], judge="nli", threshold=0.0, judge_model=path,
                     judge_threshold=threshold)
    out = metric.compute(s)
    counts = s.artifacts["leak_at_k"]["forget"]["T=1,top_p=1"]["counts"]
    assert counts == [sum(p >= threshold for p in row) for row in probs] and 0 < sum(counts) < 16
    assert out["forget_leak@4"] == pytest.approx(np.mean([c > 0 for c in counts]))


def test_judge_settings_fail_with_one_line(tmp_path):
    with pytest.raises(UserError, match="judge=nli needs judge_model"):
        LeakAtK(judge="nli")
    with pytest.raises(UserError, match="no single entailment class"):
        _entailment.EntailmentJudge(save_classifier(tmp_path / "bad", {0: "yes", 1: "no"}))
    with pytest.raises(UserError, match="does not exist"):
        _entailment.EntailmentJudge(str(tmp_path / "missing" / "model"))


@pytest.mark.parametrize("entail_label", [0, 2])
def test_leak_at_k_default_judge_with_a_classifier_is_the_papers_entailment_score(tmp_path, entail_label):
    """ES (arXiv 2511.04934): ROUGE-L recall >= 0.1, then premise = sample, hypothesis = gold, argmax label."""
    from unlearn_cli.eval.decode import Sampling
    names = ["NEUTRAL", "CONTRADICTION"]
    names.insert(entail_label, "ENTAILMENT")
    path = save_classifier(tmp_path / "nli", dict(enumerate(names)))
    judge = _entailment.load_judge(path)
    s = scorer(n_items=4)
    s.samples("forget", Sampling(4))
    key = next(k for k in s._memo if k[0] == "sample")
    items = s.items["forget"]
    # samples with every kind of overlap: the gold answer, its first words, another item's answer, none
    samples = [[it.answer, " ".join(it.answer.split()[:3]), items[(q + 1) % 4].answer, "zzz"]
               for q, it in enumerate(items)]
    s._memo[key] = samples
    want, gated = [], 0
    for gens, it in zip(samples, items):
        hits = 0
        for g in gens:
            if _stats.rouge_l(g, it.answer, True)[0] >= 0.1:
                gated += 1
                enc = judge.tokenizer(g, it.answer, return_tensors="pt")
                with torch.no_grad():
                    hits += int(judge.model(**enc).logits[0].argmax() == entail_label)
        want.append(hits)
    metric = LeakAtK(splits=["forget"], n=4, ks=[1, 4], judge_model=path)  # judge: auto
    assert metric.judge == "es"
    metric.compute(s)
    assert s.artifacts["leak_at_k"]["forget"]["T=1,top_p=1"]["counts"] == want
    assert 8 <= gated < 16  # 'zzz' (and unrelated answers) never reach the classifier
    with pytest.raises(UserError, match="judge=es needs judge_model"):
        LeakAtK(judge="es")
