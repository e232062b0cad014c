"""Peak memory and step time of unlearning optimizers relative to AdamW, on the tiny model and a >= 50 M stand-in.

Usage: python scripts/bench_optimizers.py [--optimizers adamw,zo_sgd,signadam,sam] [--steps 5] [--batch 4] [--seq 64]
       [--sizes tiny,large]

One invocation measures every (model size, optimizer) pair, one after another, each in a fresh child process
(never two at once), and prints one table with the ratios to AdamW of the same size. Each child builds the model
(Llama layout, fp32, weights from a fixed seed), a random token batch with the second half as answer tokens, and
gradient ascent (``method=ga``) as the objective, then:

* inference: peak memory of one forward under ``no_grad`` (what a forward-only optimizer should stay near);
* steps: ``--steps`` optimizer steps through the real loop (``train.loop.train``) after one warm-up step;
  the mean wall time per step and the peak memory over all steps.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` (tensor memory). On CPU the child's resident-set high-water
mark (``ru_maxrss``) minus its resident size just before the model was built, so the interpreter and libraries
drop out; the mark never goes down, so the step phase's figure is the peak of everything up to it (inference
included), which is what an out-of-memory error would see. Optimizers not registered (e.g. ``sam`` before it
lands) are listed as skipped.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from types import SimpleNamespace

SIZES = {  # name -> ModelSpec keywords (vocab 1024)
    "tiny": dict(hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128),
    "large": dict(hidden_size=640, num_layers=10, num_heads=10, intermediate_size=2560),
}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(size: str, name: str, steps: int, batch: int, seq: int) -> dict:
    import torch

    from unlearn_cli.components import make
    from unlearn_cli.methods.ga import GradientAscent
    from unlearn_cli.models.build import ModelSpec, build_tiny
    from unlearn_cli.registry import OPTIMIZERS
    from unlearn_cli.train.loop import train
    from unlearn_cli.train.settings import TrainSettings

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    base = _rss_mib()
    tok = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = build_tiny(ModelSpec(**SIZES[size], vocab_size=1024, max_positions=max(256, seq)), 1024, tok, 0)
    model.to(device)
    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1024, (batch, seq), generator=gen)
    labels = ids.clone()
    labels[:, : seq // 2] = -100
    forget = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}

    def peak() -> float:
        return torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else _maxrss_mib() - base

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"])
    inference = peak()

    class Stream:
        def __iter__(self):
            while True:
                yield {"forget": forget}

    method = GradientAscent()
    objective = lambda m, b: method.loss(m, b, None)  # noqa: E731
    optimizer = make(OPTIMIZERS, {"name": name}, "optimizer").build([p for p in model.parameters()], 1e-5)
    settings = TrainSettings(lr=1e-5, precision="fp32", max_grad_norm=1.0, log_every=10 ** 9)
    quiet = lambda *a: None  # noqa: E731
    train(model, objective, Stream(), optimizer, settings, 1, stage="warmup", log=quiet, device=device)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    train(model, objective, Stream(), optimizer, settings, steps, stage="bench", log=quiet, device=device)
    if cuda:
        torch.cuda.synchronize()
    return {"params": params, "inference_mib": inference, "peak_mib": peak(),
            "step_s": (time.perf_counter() - start) / steps, "device": device.type}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimizers", default="adamw,zo_sgd,signadam,sam,gp")
    parser.add_argument("--sizes", default="tiny,large")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "OPTIMIZER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.batch, args.seq)))
        return

    from unlearn_cli.registry import OPTIMIZERS

    names = [n for n in args.optimizers.split(",") if n]
    known = set(OPTIMIZERS.names())
    if "adamw" not in names:
        names.insert(0, "adamw")
    rows = []
    for size in args.sizes.split(","):
        results = {}
        for name in names:
            if name not in known:
                rows.append((size, name, None, None))
                continue
            out = subprocess.run([sys.executable, __file__, "--child", size, name, "--steps", str(args.steps),
                                  "--batch", str(args.batch), "--seq", str(args.seq)],
                                 capture_output=True, text=True, check=True)
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((size, name, results[name], results))
    print(f"batch {args.batch} x {args.seq} tokens, {args.steps} timed steps, fp32, method ga")
    print(f"{'model':<6} {'params':>8} {'optimizer':<10} {'inference MiB':>13} {'peak MiB':>9} {'peak/adamw':>10} "
          f"{'s/step':>8} {'time/adamw':>10}")
    for size, name, r, results in rows:
        if r is None:
            print(f"{size:<6} {'':>8} {name:<10} skipped (not registered)")
            continue
        ref = results["adamw"]
        print(f"{size:<6} {r['params'] / 1e6:>7.1f}M {name:<10} {r['inference_mib']:>13.1f} {r['peak_mib']:>9.1f} "
              f"{r['peak_mib'] / ref['peak_mib']:>10.2f} {r['step_s']:>8.3f} {r['step_s'] / ref['step_s']:>10.2f}")


if __name__ == "__main__":
    main()
