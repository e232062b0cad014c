"""Evaluation-suite timing on the tiny model (random weights; timing only).

1. The full suite through ONE shared StageScorer vs a fresh scorer (and fresh encodings) per
   metric, i.e. every metric doing its own generation / forward passes. Expect >= 2x.
2. leak@k sampling, n=64 per query: batched ``num_return_sequences`` generation vs a loop of
   one generate call per sample. Expect >= 5x.
Prints wall times, speed-ups and peak memory (process max RSS; CUDA peak when on GPU).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_eval.py [--queries 16] [--n 64]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import torch

from unlearn_cli.data.fictional import generate as fictional
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.metrics.answer_prob import AnswerProbability
from unlearn_cli.metrics.forget_quality import ForgetQuality
from unlearn_cli.metrics.mcq_acc import MCQAccuracy
from unlearn_cli.metrics.mia_auc import MiaAUC
from unlearn_cli.metrics.model_utility import ModelUtility
from unlearn_cli.metrics.qa_acc import QAAccuracy
from unlearn_cli.metrics.rouge_l import RougeL
from unlearn_cli.metrics.truth_ratio import TruthRatio
from unlearn_cli.models import ModelSpec, build_tiny, device
from unlearn_cli.scoring import DecodeSettings, EvalInputs, Sampling, StageScorer, generate

TEMPLATE = "Question: {question}\nAnswer:"


def suite():
    return [QAAccuracy(splits=["forget", "retain", "holdout"]), RougeL(splits=["forget", "retain"], measure="both"),
            AnswerProbability(splits=["forget", "retain", "holdout"]),
            TruthRatio(splits=["forget", "retain"]), ForgetQuality(),
            ModelUtility(splits=["retain"], normalised_splits=[]), MCQAccuracy(splits=["forget_mcq", "retain_mcq"]),
            MiaAUC(members="forget", nonmembers="holdout"), MiaAUC(members="forget_bios", nonmembers="holdout_bios")]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=16, help="leak@k queries")
    ap.add_argument("--n", type=int, default=64, help="samples per query")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()
    dev = device()
    data = fictional()
    tok = train_bpe_tokenizer(data.corpus, 1024)
    torch.manual_seed(0)
    model = build_tiny(ModelSpec(), len(tok), tok, 0).to(dev).eval()
    decode = DecodeSettings(max_new_tokens=args.max_new_tokens, batch_size=256)
    null = contextlib.nullcontext
    ref = {"is_reference": True}

    def inputs():
        return EvalInputs(tok, TEMPLATE, data.qa, data.mcq, data.texts)

    # warm-up (allocator, kernels)
    for m in suite()[:1]:
        m.compute(StageScorer(model, inputs(), decode, null, "warm", ref))

    t0 = time.perf_counter()
    scorer = StageScorer(model, inputs(), decode, null, "shared", ref)
    shared = {}
    for m in suite():
        shared.update(m.compute(scorer))
    t_shared = time.perf_counter() - t0

    t0 = time.perf_counter()
    separate = {}
    for m in suite():
        separate.update(m.compute(StageScorer(model, inputs(), decode, null, "separate", ref)))
    t_separate = time.perf_counter() - t0
    same = all(abs(shared[k] - separate[k]) < 1e-6 for k in shared)
    print(f"device: {dev}, torch threads: {torch.get_num_threads()}")
    print(f"eval suite ({len(suite())} metrics, {len(shared)} numbers): shared scorer {t_shared:.2f}s, "
          f"fresh scorer per metric {t_separate:.2f}s -> {t_separate / t_shared:.1f}x (identical numbers: {same})")

    prompts = inputs().prompts("forget")[:args.queries]
    sampling = Sampling(args.n)
    t0 = time.perf_counter()
    batched = generate(model, tok, prompts, args.max_new_tokens, 1024, null, sampling=sampling, seed=0)
    t_batched = time.perf_counter() - t0
    one = Sampling(1)
    t0 = time.perf_counter()
    looped = [[generate(model, tok, [p], args.max_new_tokens, 1, null, sampling=one, seed=s * 100003 + i)[0][0]
               for s in range(args.n)] for i, p in enumerate(prompts)]
    t_loop = time.perf_counter() - t0
    assert [len(x) for x in batched] == [len(x) for x in looped] == [args.n] * len(prompts)
    print(f"leak@k sampling ({args.queries} queries x n={args.n}, {args.max_new_tokens} new tokens): batched "
          f"{t_batched:.2f}s, per-sample loop {t_loop:.2f}s -> {t_loop / t_batched:.1f}x")
    gpu = f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if dev.type == "cuda" else ""
    print(f"peak memory: max RSS {peak_mb():.0f} MiB{gpu}")


if __name__ == "__main__":
    main()
