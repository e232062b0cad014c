"""Time NPO unlearning steps with the reference cache on vs off, on the tiny model, in one process.

Usage: python scripts/bench_reference_cache.py [--steps 20] [--batch-size 8] [--people 40]

What it measures:
* step time: wall-clock seconds per optimizer step of ``training.train`` (fp32), after one warm-up
  step per phase. The cached phase's one-off ``Reference.precompute`` time is reported separately.
* memory: on CUDA, ``torch.cuda.max_memory_allocated`` reset before each phase (exact peak of
  tensor memory in that phase). On CPU, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` — the
  process's resident-set high-water mark, which never goes down, so a phase only shows an
  increase if it pushed the peak higher than everything before it (it includes the Python
  interpreter, libraries and allocator caches; tracemalloc is not used because it does not see
  tensor storage).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time

import torch

from unlearn_cli.data.encoding import encode_qa
from unlearn_cli.data.fictional import generate
from unlearn_cli.data.tokenizer import train_bpe_tokenizer
from unlearn_cli.methods.npo import NPO
from unlearn_cli.models.build import ModelSpec, build_tiny, frozen_copy
from unlearn_cli.train.reference import Reference
from unlearn_cli.train.batches import BatchStream
from unlearn_cli.train.loop import train
from unlearn_cli.train.settings import TrainSettings

TEMPLATE = "Question: {question}\nAnswer:"


def maxrss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def phase(name, model_state, tok, splits, device, cache, steps, batch_size, retain_weight=1.0):
    spec = ModelSpec(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128)
    model = build_tiny(spec, len(tok), tok, 0)
    model.load_state_dict(model_state)
    model.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = maxrss_mib()
    method = NPO(beta=0.1, retain_weight=retain_weight)
    reference = Reference(frozen_copy(model), tok.pad_token_id, cache=cache, autocast=contextlib.nullcontext)
    t0 = time.perf_counter()
    reference.precompute("forget", splits["forget"])
    precompute_s = time.perf_counter() - t0
    settings = TrainSettings(lr=1e-5, batch_size=batch_size, retain_batch_size=batch_size, precision="fp32",
                             max_grad_norm=1.0, log_every=10 ** 9)
    loss_fn = lambda m, b: method.loss(m, b, reference)
    quiet = lambda *a: None
    times = []

    def timed_step(step):
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    used = {k: v for k, v in splits.items() if k == "forget" or method.needs_retain}
    stream = BatchStream(used, {k: batch_size for k in used}, tok.pad_token_id, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr)
    start = time.perf_counter()
    train(model, loss_fn, stream, optimizer, settings, steps + 1, stage=name, log=quiet, device=device,
          after_step=timed_step)
    step_times = [b - a for a, b in zip(times[:-1], times[1:])]  # drops the warm-up step
    per_step = sum(step_times) / len(step_times)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
    return {"phase": name, "precompute_s": precompute_s, "step_s": per_step, "total_s": time.perf_counter() - start,
            "cuda_peak_mib": peak, "maxrss_before_mib": rss0, "maxrss_after_mib": maxrss_mib()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--people", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--retain-weight", type=float, default=1.0,
                    help="NPO retain weight; 0 = forget-only NPO, where the reference forward is a larger share of a step")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = generate(num_people=args.people)
    tok = train_bpe_tokenizer(data.corpus, 512)
    splits = {k: encode_qa(tok, data.train[k], TEMPLATE) for k in ("forget", "retain")}
    spec = ModelSpec(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128)
    state = build_tiny(spec, len(tok), tok, 0).state_dict()
    print(f"device={device.type} forget={len(splits['forget'])} retain={len(splits['retain'])} "
          f"steps={args.steps} batch={args.batch_size}")
    results = [phase("cached", state, tok, splits, device, True, args.steps, args.batch_size, args.retain_weight),
               phase("uncached", state, tok, splits, device, False, args.steps, args.batch_size, args.retain_weight)]
    for r in results:
        mem = (f"cuda peak {r['cuda_peak_mib']:.1f} MiB" if r["cuda_peak_mib"] is not None else
               f"maxrss {r['maxrss_before_mib']:.1f} -> {r['maxrss_after_mib']:.1f} MiB (process high-water mark)")
        print(f"{r['phase']:>8}: {1000 * r['step_s']:.2f} ms/step, precompute {1000 * r['precompute_s']:.1f} ms, {mem}")
    ratio = results[1]["step_s"] / results[0]["step_s"]
    print(f"step-time ratio uncached/cached: {ratio:.2f}")


if __name__ == "__main__":
    main()
