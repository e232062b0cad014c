"""Evaluation-suite timing on the tiny model (random weights; timing only).

1. Each configured suite (``conf/eval/<suite>.yaml`` on its benchmark, composed as ``unlearn run``
   composes it) through ONE shared StageScorer (every split / answer field scored once, the greedy
   requests of all metrics pooled into one generate call per max_new_tokens) vs a fresh scorer
   (and fresh encodings) per metric, i.e. every metric doing its own generation / forward passes:
   split by split, and with the metric's own splits pooled. Expect >= 2x where the suite's
   metrics overlap (TOFU: model utility re-uses ROUGE generations and truth-ratio NLLs).
2. leak@k sampling, n=64 per query: batched ``num_return_sequences`` generation vs a loop of
   one generate call per sample. Expect >= 5x.
Prints wall times, speed-ups and peak memory (process max RSS; CUDA peak when on GPU).

    .venv/bin/python scripts/bench_eval.py [--suites default tofu] [--repeat 3] [--queries 16] [--n 64]

TOFU reads ``$UNLEARN_DATA_DIR/tofu`` (default: ../shared/data beside the repo), subsampled to
two forget authors and 40 items per other split so the tiny model runs it in seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import time
from pathlib import Path

import torch

from unlearn_cli import cli, components
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.models.build import build_tiny, device, prompt_format
from unlearn_cli.eval.decode import Sampling, generate
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.eval.scorer import StageScorer

SUITES = {
    "default": [],
    "tofu": ["benchmark=tofu", "benchmark.split=forget01", "benchmark.num_forget_authors=2",
             "benchmark.max_items=40"],
    "muse": ["benchmark=muse_news", "benchmark.max_items=16"],
}
REPO = Path(__file__).resolve().parent.parent


def compose(overrides):
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(cli.conf_dir()), version_base="1.3"):
        return cli._compose_one(overrides)


def setup(suite: str, dev):
    """(metrics, decode settings, inputs factory, model, tokenizer) of ``suite`` on its benchmark."""
    cfg = compose(SUITES[suite])
    c = components.build(cfg).components
    data = c.benchmark.load()
    tok = train_bpe_tokenizer(data.corpus, c.model.vocab_size)
    torch.manual_seed(0)
    model = build_tiny(c.model, len(tok), tok, 0).to(dev).eval()

    def inputs():
        made = EvalInputs(tok, prompt_format(c.model, tok), data.qa, data.mcq, data.texts, c.decode.max_text_tokens)
        for metric in c.metrics.values():
            metric.resolve(made)
        return made
    return list(c.metrics.values()), c.decode, inputs, model, tok


def time_suite(suite: str, dev, repeat: int) -> None:
    metrics, decode, inputs, model, _ = setup(suite, dev)
    null = contextlib.nullcontext
    stage = "oracle"  # the oracle stage: forget quality / privleak compare with themselves
    metrics[0].compute(StageScorer(model, inputs(), decode, null, stage))  # allocator, kernels

    def shared():
        scorer = StageScorer(model, inputs(), decode, null, stage)
        scorer.prefetch(metrics)
        return {k: v for m in metrics for k, v in m.compute(scorer).items()}

    def separate(pool: bool):
        values = {}
        for m in metrics:
            alone = StageScorer(model, inputs(), decode, null, stage)
            if pool:
                alone.prefetch([m])  # the metric's own splits pooled, as the shared core pools all
            values.update(m.compute(alone))
        return values

    t_shared, a = best_of(shared, repeat)
    names = ", ".join(type(m).__name__ for m in metrics)
    print(f"suite '{suite}' ({len(metrics)} metrics: {names}; {len(a)} numbers), best of {repeat}:")
    print(f"  shared scorer (one pass per split/field, greedy requests of all splits pooled): {t_shared:.2f}s")
    for pool, what in ((False, "split by split"), (True, "its own splits pooled")):
        t, b = best_of(lambda: separate(pool), repeat)
        same = a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-6 for k in a)
        print(f"  fresh scorer per metric, {what}: {t:.2f}s -> shared is {t / t_shared:.1f}x faster "
              f"(identical numbers: {same})")


def best_of(fn, repeat: int):
    """(fastest wall time of ``repeat`` calls, the last call's result): the minimum filters out
    the scheduler noise of a shared 2-core machine."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--suites", nargs="+", default=["default", "tofu"], choices=sorted(SUITES))
    ap.add_argument("--queries", type=int, default=16, help="leak@k queries")
    ap.add_argument("--n", type=int, default=64, help="samples per query")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="suite timings: best of this many runs")
    args = ap.parse_args()
    os.environ.setdefault("UNLEARN_DATA_DIR", str(REPO.parent / "shared" / "data"))
    dev = device()
    print(f"device: {dev}, torch threads: {torch.get_num_threads()}")
    for suite in args.suites:
        time_suite(suite, dev, args.repeat)

    _, _, inputs, model, tok = setup("default", dev)
    prompts = inputs().prompts("forget")[:args.queries]
    null = contextlib.nullcontext
    t0 = time.perf_counter()
    batched = generate(model, tok, prompts, args.max_new_tokens, 1024, null, sampling=Sampling(args.n), seed=0)
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
