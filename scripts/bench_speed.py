"""Speed and memory of the training and start-up paths, measured side by side in one run on this machine.

Usage: python scripts/bench_speed.py [--threads 2] [--skip-run]

Each measurement runs in its own child process (this script with ``--child``), so every peak is that
configuration's own: the peak resident set (``ru_maxrss``) minus the resident size just before the work
started (interpreter, libraries and the model's weights are in the baseline). Printed:

1. **Loss memory at a 128 k vocabulary**: one forward + backward of the answer-token NLL on a 2-layer Llama
   stand-in (hidden 64, vocabulary 128 000), batch 8 of 224-token prompts and 32-token answers, with the logits
   of the whole sequence (``answer_forward(full_logits=True)``, what every loss did before) and with the hidden
   states gathered at the answer positions before the LM head (the default now). Same loss (printed).
2. **Reference cache**: NPO (beta 0.1, retain NLL weight 1) on the embedded benchmark's 60-person split,
   a 4-layer hidden-256 Llama (about 3.4 M parameters), batch 8, fp32, through ``train.unlearn.build`` and
   ``run`` -- cached (length-sorted ``inference_mode`` build, then theta_0 released) vs uncached (a theta_0
   forward every step) -- at 30 and 300 steps: wall time including the cache build, step time, peak memory;
   and the cache build against one epoch of reference forwards.
3. **Warm run**: the embedded default ``unlearn run`` (cache warm), wall time, and the time of importing the
   pipeline (``python -c "import unlearn_cli.pipeline"``) as its import share; ``unlearn --help`` and
   ``unlearn list``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def child_loss(gather: bool) -> dict:
    import torch

    from unlearn_cli.data.encoding import EncodedQA
    from unlearn_cli.models.build import ModelSpec, build_tiny
    from unlearn_cli.models.forward import answer_forward

    class _Tok:  # build_tiny reads only the special-token ids
        pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    spec = ModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
    model = build_tiny(spec, 128_000, _Tok(), 0)
    gen = torch.Generator().manual_seed(0)
    rows = EncodedQA([torch.randint(3, 128_000, (224,), generator=gen).tolist() for _ in range(8)],
                     [torch.randint(3, 128_000, (32,), generator=gen).tolist() for _ in range(8)])
    batch = rows.batch(range(8), 0)
    base = _current_rss_mib()
    start = time.perf_counter()
    loss = answer_forward(model, batch, full_logits=not gather).mean_nll()
    loss.backward()
    return {"loss": float(loss.detach()), "seconds": time.perf_counter() - start, "peak_mib": _rss_mib() - base}


def child_npo(cache: bool, steps: int, threads: int) -> dict:
    import torch

    from unlearn_cli.data.encoding import PromptFormat, encode_qa
    from unlearn_cli.data.fictional import generate
    from unlearn_cli.data.tokenizer import train_bpe_tokenizer
    from unlearn_cli.methods.npo import NPO
    from unlearn_cli.models.build import ModelSpec, build_tiny
    from unlearn_cli.models.forward import answer_forward
    from unlearn_cli.optimizers.adamw import AdamW
    from unlearn_cli.train import unlearn
    from unlearn_cli.train.settings import TrainSettings

    torch.set_num_threads(threads)
    data = generate(num_people=60)
    tok = train_bpe_tokenizer(data.corpus, 512)
    fmt = PromptFormat("Question: {question}\nAnswer: ")
    encode = lambda items, answers=None: encode_qa(tok, items, fmt, answers)  # noqa: E731
    train_encoded = {k: encode(v) for k, v in data.train.items()}
    spec = ModelSpec(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=512)
    model = build_tiny(spec, len(tok), tok, 0)
    settings = TrainSettings(lr=1e-5, steps=steps, batch_size=8, retain_batch_size=8, precision="fp32",
                             max_grad_norm=1.0, log_every=10 ** 9)
    base = _current_rss_mib()
    start = time.perf_counter()
    setup = unlearn.build(model, NPO(beta=0.1, retain_weight=1.0), data, train_encoded, encode, settings,
                          AdamW(), {}, seed=0, pad_id=tok.pad_token_id, device=torch.device("cpu"),
                          cache_reference=cache, tokenizer=tok)
    built = time.perf_counter() - start
    unlearn.run(setup, log=lambda *a: None, device=torch.device("cpu"))
    total = time.perf_counter() - start
    epoch = None
    if cache:  # one epoch of the reference forwards the uncached run does (forget batches of 8)
        ref = build_tiny(spec, len(tok), tok, 0).eval()
        forget = train_encoded["forget"]
        t0 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(forget), 8):
                answer_forward(ref, forget.batch(range(i, min(i + 8, len(forget))), tok.pad_token_id)).sequence_nll()
        epoch = time.perf_counter() - t0
    return {"total_s": total, "build_s": built, "step_ms": 1000 * (total - built) / steps,
            "peak_mib": _rss_mib() - base, "epoch_of_reference_forwards_s": epoch}


def _child(args: list) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _timed(cmd: list, cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, capture_output=True, check=True)
    return time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-run", action="store_true", help="leave out the warm-run timing")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        result = child_loss(rest[0] == "gather") if kind == "loss" else child_npo(rest[0] == "cached", int(rest[1]),
                                                                                   args.threads)
        print(json.dumps(result))
        return

    print("1. answer-token loss, forward + backward, vocabulary 128 000, batch 8 x (224 prompt + 32 answer) tokens")
    full, gathered = _child(["loss", "full"]), _child(["loss", "gather"])
    for name, r in (("full logits", full), ("gathered", gathered)):
        print(f"   {name:<12} loss {r['loss']:.6f}  {r['seconds']:.2f} s  peak +{r['peak_mib']:.0f} MiB")
    print(f"   peak-memory ratio full / gathered: {full['peak_mib'] / max(gathered['peak_mib'], 1e-9):.1f}x, "
          f"time ratio {full['seconds'] / gathered['seconds']:.2f}x")

    print("2. NPO on the embedded benchmark (3.4 M-parameter Llama, batch 8, fp32): reference cache on vs off")
    for steps in (30, 300):
        cached, uncached = _child(["npo", "cached", str(steps)]), _child(["npo", "uncached", str(steps)])
        for name, r in (("cached", cached), ("uncached", uncached)):
            print(f"   {steps:>3} steps {name:<8} total {r['total_s']:.2f} s (setup {r['build_s']:.2f} s)  "
                  f"{r['step_ms']:.1f} ms/step  peak +{r['peak_mib']:.0f} MiB")
        print(f"   {steps:>3} steps: total-time ratio uncached / cached {uncached['total_s'] / cached['total_s']:.2f}x, "
              f"peak-memory ratio cached / uncached {cached['peak_mib'] / max(uncached['peak_mib'], 1e-9):.2f}")
    print(f"   cache build (setup incl. theta_0 copy) {cached['build_s']:.2f} s vs one epoch of reference forwards "
          f"{cached['epoch_of_reference_forwards_s']:.2f} s")

    if args.skip_run:
        return
    print("3. start-up and the warm embedded-default run")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        run = [sys.executable, "-m", "unlearn_cli", "run", "progress=false", "output_dir=warm", "overwrite=true"]
        _timed(run, cwd)  # warms the prepared-model cache and the disk cache
        wall = _timed(run, cwd)
        imports = min(_timed([sys.executable, "-c", "import unlearn_cli.pipeline"], cwd) for _ in range(3))
        bare = min(_timed([sys.executable, "-c", "pass"], cwd) for _ in range(3))
        helps = min(_timed([sys.executable, "-m", "unlearn_cli", "--help"], cwd) for _ in range(3))
        lists = min(_timed([sys.executable, "-m", "unlearn_cli", "list"], cwd) for _ in range(3))
    print(f"   warm run {wall:.2f} s, of which importing the pipeline {imports - bare:.2f} s "
          f"({100 * (imports - bare) / wall:.0f}%); unlearn --help {helps:.2f} s, unlearn list {lists:.2f} s")


if __name__ == "__main__":
    main()
