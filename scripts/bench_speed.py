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
   and the cache build (``Reference.precompute`` of the forget split) against one epoch of the reference
   forwards the uncached run does, both warm, best of 5.
3. **Warm run**: the embedded default ``unlearn run`` (cache warm: prepared models, and the target's and
   oracle's evaluations, ``cache_eval``), wall time, the same with ``cache_eval=false`` (every stage evaluated),
   and the time of importing the pipeline (``python -c "import unlearn_cli.pipeline"``) as its import share;
   ``unlearn --help`` and ``unlearn list``.
4. **Decoding** (needs the TOFU files: ``UNLEARN_DATA_DIR`` or ``../shared/data``). The tiny TOFU command at
   200 new tokens (``eval=tofu``, batch 64) runs with ``eval.decode.engine=generate`` and ``native``: each
   stage's evaluation time (the TOFU suite), and whether ``results.json`` and the per-example rows are
   identical. The generate run also saves each stage's model and greedy prompts, on which the native loop
   and per-bucket ``model.generate`` are then timed, each engine in its own process (best of 3 runs on the tiny
   model, 1 on the stand-ins, after a warm-up), in ``--pairs`` pairs of processes (3) run alternately (generate,
   native, generate, native, ...): the ratio printed first is the median of the pairs' ratios, which a drift
   of the machine's speed over minutes moves far less than the ratio of each engine's best run, printed
   beside it; with the peak resident memory each adds above its warm process,
   at batch 64 and 32: the 2-layer tiny model
   (0.66 M parameters) and a 57 M-parameter stand-in (the same trained model widened function-preservingly
   to hidden 768, 24 heads, MLP 2048, 8 layers: zero-initialised new rows of the output projections, the
   RMSNorm gains rescaled for the wider mean), which answers and stops like the fine-tuned model while
   costing per token what a 57 M model costs. A random-initialised model never emits EOS; the same
   stand-in architecture at random initialisation is timed too (no row stops early). Sampling: 8 samples per
   prompt (temperature 0.8, top-p 0.9, top-k 20, seed 0) on the tiny model, with the native loop's two streams:
   ``per_row`` (the default; its own samples, which must not vary between runs) and ``generate``'s stream (the
   same samples as ``model.generate`` required). The TOFU command runs with ``cache_eval=false``, so every
   stage is evaluated (and captured) by both engines. Each case
   also prints its *row-step bound*: the decode steps x rows ``generate`` computes (every row of a bucket until
   the bucket's longest is done) over those the rows need on their own (their tokens, EOS included) -- the most
   that dropping finished rows can gain where a step's cost is proportional to its rows (prefill excluded). A
   step's cost is far from proportional to its rows (on the stand-in, 16 rows cost half of 64), which is why
   the native loop keeps its batch full (``eval.slot_decode``) and can pass the bound.
5. **ROUGE-L**: ``rouge_score.RougeScorer(["rougeL"], use_stemmer=True)`` vs ``eval.stats.rouge_l`` on the
   embedded benchmark's answers (each scored against the next item's, as 4 stages do), time and equality.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# decoding cases, numbered as printed: (stage, widened, batch size, samples per prompt, sampling_rng)
DECODE_CASES = [(stage, "no", batch, 0, "generate") for stage in ("target", "unlearned") for batch in (64, 32)]
DECODE_CASES += [(stage, "no", 64, 8, rng) for stage in ("target", "unlearned") for rng in ("generate", "per_row")]
DECODE_CASES += [("target", "yes", 64, 0, "generate"), ("target", "yes", 32, 0, "generate"),
                 ("unlearned", "yes", 64, 0, "generate"), ("target", "random", 64, 0, "generate")]


def _case_numbers(text: str) -> set:
    """``--cases``: comma-separated numbers of ``DECODE_CASES``."""
    try:
        numbers = {int(item) for item in text.split(",")}
    except ValueError:
        numbers = {-1}
    if not numbers <= set(range(len(DECODE_CASES))):
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated case numbers from 0 to "
                                         f"{len(DECODE_CASES) - 1}")
    return numbers


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
    epoch = cache_build = None
    if cache:  # the cache build vs one epoch of the reference forwards the uncached run does (batches of 8)
        from unlearn_cli.train.reference import Reference
        ref = build_tiny(spec, len(tok), tok, 0).eval()
        forget = train_encoded["forget"]

        def one_epoch():
            with torch.no_grad():
                for i in range(0, len(forget), 8):
                    answer_forward(ref, forget.batch(range(i, min(i + 8, len(forget))),
                                                     tok.pad_token_id)).sequence_nll()

        def timed(fn) -> float:  # best of 5, both warm
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)
        epoch = timed(one_epoch)
        cache_build = timed(lambda: Reference(ref, tok.pad_token_id, batch_size=8).precompute("forget", forget))
    return {"total_s": total, "build_s": built, "step_ms": 1000 * (total - built) / steps,
            "peak_mib": _rss_mib() - base, "epoch_of_reference_forwards_s": epoch, "cache_build_s": cache_build}


TOFU_RUN = ["benchmark=tofu", "model=tiny", "benchmark.split=forget01", "benchmark.num_forget_authors=2",
            "benchmark.max_items=40", "unlearn.lr=1e-3", "attack=none", "eval.decode.max_new_tokens=200",
            "progress=false", "overwrite=true", "cache_eval=false"]


def child_tofu_suite(engine: str, out_dir: str, capture: bool) -> dict:
    """The tiny TOFU command in this process; ``capture`` saves each stage's model and greedy prompts."""
    import unlearn_cli.eval.scorer as scorer
    from unlearn_cli.cli import main as cli_main

    out = Path(out_dir)
    if capture:
        real = scorer.generate

        def recording(model, tokenizer, prompts, *a, **kw):
            if kw.get("sampling") is None:
                stage = kw["desc"].split()[1].split(":")[0]
                model.save_pretrained(out / "models" / stage)
                (out / "models" / stage / "prompts.json").write_text(json.dumps([list(p) for p in prompts]))
            return real(model, tokenizer, prompts, *a, **kw)
        scorer.generate = recording
    cli_main(["run", *TOFU_RUN, f"output_dir={out / engine}", f"eval.decode.engine={engine}"])
    seconds = {}
    for stage in sorted((out / engine / "stages").glob("*.json")):
        seconds.update({k: v for k, v in json.loads(stage.read_text())["seconds"].items() if k.startswith("eval")})
    return {"eval_seconds": seconds}


def widen(model, hidden: int, heads: int, intermediate: int, layers: int):
    """A wider and deeper Llama computing the same function as ``model`` (up to float rounding).

    The residual stream's new dimensions stay zero: new embedding columns, output-projection rows and the new
    heads' / MLP units' output columns are zero, and new layers add zero (zero ``o_proj`` and ``down_proj``).
    RMSNorm averages over ``hidden`` dimensions instead of the old width, so each gain is divided by
    ``sqrt(hidden / old)`` and epsilon by ``hidden / old``."""
    import torch
    from transformers import LlamaForCausalLM

    cfg = model.config
    ratio = hidden / cfg.hidden_size
    new_cfg = type(cfg).from_dict({**cfg.to_dict(), "hidden_size": hidden, "num_attention_heads": heads,
                                   "num_key_value_heads": heads, "intermediate_size": intermediate,
                                   "num_hidden_layers": layers, "head_dim": cfg.head_dim,
                                   "rms_norm_eps": cfg.rms_norm_eps / ratio})
    torch.manual_seed(0)
    wide = LlamaForCausalLM(new_cfg).eval()
    src = model.state_dict()
    with torch.no_grad():
        for name, param in wide.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")) or "embed_tokens" in name:
                param.zero_()
            if name.endswith("norm.weight"):
                param.fill_(1 / ratio ** 0.5)
            if name in src:
                old_param = src[name]
                param[tuple(slice(0, n) for n in old_param.shape)] = (
                    old_param / ratio ** 0.5 if name.endswith("norm.weight") else old_param)
    return wide


def child_decode(model_dir: str, widened: str, batch_size: int, max_new_tokens: int, samples: int, rng: str,
                 engine: str, repeats: int, threads: int) -> dict:
    """One engine on one stage's greedy prompts: per-bucket ``model.generate`` or the native loop, greedy or
    ``samples`` samples per prompt (temperature 0.8, top-p 0.9, top-k 20, seed 0); ``rng``: the native loop's
    ``sampling_rng``. After a small warm-up, the best of ``repeats`` runs; the peak resident memory above the
    warm process; the outputs as token ids."""
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM

    from unlearn_cli.eval.decode import Sampling, generate

    torch.set_num_threads(threads)
    sampling = Sampling(samples, 0.8, 0.9, 20) if samples else None
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompts = json.loads((Path(model_dir) / "prompts.json").read_text())
    if widened != "no":
        model = widen(model, 768, 24, 2048, 8)
        if widened == "random":
            torch.manual_seed(0)
            model = type(model)(model.config).eval()

    class Ids:  # token ids as text, so equality is checked on tokens
        pad_token_id, eos_token_id = model.config.pad_token_id, model.config.eos_token_id

        def batch_decode(self, rows, skip_special_tokens=True):
            rows = rows.tolist() if hasattr(rows, "tolist") else rows
            return [" ".join(str(t) for t in r if t not in (self.pad_token_id, self.eos_token_id)) for r in rows]
    tok = Ids()
    null = contextlib.nullcontext
    generate(model, tok, prompts[:4], 4, 4, null, engine=engine)  # warm-up
    base, best = _current_rss_mib(), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = generate(model, tok, prompts, max_new_tokens, batch_size, null, sampling=sampling, seed=0,
                       engine=engine, sampling_rng=rng if engine == "native" else "generate")
        best = min(best, time.perf_counter() - start)
    return {"params_m": sum(p.numel() for p in model.parameters()) / 1e6, "seconds": best,
            "peak_mib": _rss_mib() - base, "outputs": out}


def row_step_bound(outputs: list, prompt_lengths: list, batch_size: int, samples: int, max_new_tokens: int) -> float:
    """Decode steps x rows that per-bucket ``generate`` computes (each bucket's rows until its longest is done)
    over those the rows need on their own (their tokens, EOS included): what dropping finished rows gains at
    most where a step's cost is proportional to its rows."""
    from unlearn_cli.eval.decode import length_buckets
    decoded = [[min(len(sample.split()) + 1, max_new_tokens) for sample in o] for o in outputs]
    buckets = length_buckets(prompt_lengths, max(1, batch_size // max(samples, 1)))
    bucket_rows = sum(len(idx) * max(samples, 1) * max(max(decoded[i]) for i in idx) for idx in buckets)
    return bucket_rows / sum(sum(d) for d in decoded)


def data_dir() -> Path | None:
    import os
    env = os.environ.get("UNLEARN_DATA_DIR")
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(env) if env else default
    return path if (path / "tofu").exists() else None


def _examples_equal(a: Path, b: Path) -> str:
    """'identical' or the first difference between two runs' results.json and examples/*.jsonl."""
    ra, rb = json.loads((a / "results.json").read_text()), json.loads((b / "results.json").read_text())
    if ra["metrics"] != rb["metrics"]:
        return "results.json metrics differ"
    for f in sorted((a / "examples").glob("*.jsonl")):
        if f.read_text() != (b / "examples" / f.name).read_text():
            return f"examples/{f.name} differs"
    return "identical"


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
    ap.add_argument("--only-decode", action="store_true", help="run section 4 only")
    ap.add_argument("--only-rouge", action="store_true", help="run section 5 only")
    ap.add_argument("--pairs", type=int, default=3, help="decoding: generate/native process pairs per case")
    ap.add_argument("--cases", type=_case_numbers,
                    help="decoding: run only these cases (comma-separated numbers, as printed)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "loss":
            result = child_loss(rest[0] == "gather")
        elif kind == "npo":
            result = child_npo(rest[0] == "cached", int(rest[1]), args.threads)
        elif kind == "tofu":
            result = child_tofu_suite(rest[0], rest[1], rest[2] == "capture")
        else:
            result = child_decode(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]), rest[5], rest[6],
                                  int(rest[7]), args.threads)
        print(json.dumps(result))
        return
    if args.only_decode:
        return decoding(args.pairs, args.cases)
    if args.only_rouge:
        return rouge()

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
    print(f"   cache build {1000 * cached['cache_build_s']:.1f} ms vs one epoch of reference forwards "
          f"{1000 * cached['epoch_of_reference_forwards_s']:.1f} ms (best of 5, warm; the cold setup above also "
          f"copies theta_0 and builds the method): ratio {cached['cache_build_s'] / cached['epoch_of_reference_forwards_s']:.2f}")

    if args.skip_run:
        return
    print("3. start-up and the warm embedded-default run")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        run = [sys.executable, "-m", "unlearn_cli", "run", "progress=false", "output_dir=warm", "overwrite=true"]
        _timed(run, cwd)  # warms the prepared-model cache, the evaluation cache and the disk cache
        wall = _timed(run, cwd)
        uncached = _timed([*run, "cache_eval=false"], cwd)
        imports = min(_timed([sys.executable, "-c", "import unlearn_cli.pipeline"], cwd) for _ in range(3))
        bare = min(_timed([sys.executable, "-c", "pass"], cwd) for _ in range(3))
        helps = min(_timed([sys.executable, "-m", "unlearn_cli", "--help"], cwd) for _ in range(3))
        lists = min(_timed([sys.executable, "-m", "unlearn_cli", "list"], cwd) for _ in range(3))
    print(f"   warm run {wall:.2f} s (target and oracle read from the evaluation cache; {uncached:.2f} s with "
          f"cache_eval=false), of which importing the pipeline {imports - bare:.2f} s "
          f"({100 * (imports - bare) / wall:.0f}%); unlearn --help {helps:.2f} s, unlearn list {lists:.2f} s")
    decoding(args.pairs, args.cases)
    rouge()


def rouge() -> None:
    from rouge_score import rouge_scorer

    from unlearn_cli.data.fictional import generate as fictional
    from unlearn_cli.eval import stats

    qa = fictional(num_people=100).qa
    answers = [it.answer for split in qa for it in qa[split]][:1000]
    pairs = list(zip(answers, answers[1:] + answers[:1]))
    package = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    stats.rouge_l("warm", "up", True)  # imports the tokenizer (nltk) outside the timing
    start = time.perf_counter()
    ref = [package.score(b, a)["rougeL"] for _ in range(4) for a, b in pairs]
    t_package = time.perf_counter() - start
    start = time.perf_counter()
    ours = [stats.rouge_l(a, b, True) for _ in range(4) for a, b in pairs]
    t_ours = time.perf_counter() - start
    same = sum((float(r.recall), float(r.fmeasure)) == o for r, o in zip(ref, ours))
    print(f"5. ROUGE-L, 4 stages x {len(pairs)} answer pairs: rouge_score {t_package:.3f} s, eval.stats.rouge_l "
          f"{t_ours:.3f} s, ratio {t_package / t_ours:.1f}x; identical {same}/{len(ref)}")


def decoding(pairs_per_case: int = 3, chosen: set | None = None) -> None:
    print("4. decoding: the native loop vs model.generate per length bucket (tiny TOFU command, 200 new tokens)")
    if data_dir() is None:
        print("   skipped: no TOFU files (set UNLEARN_DATA_DIR)")
        return
    import os
    os.environ["UNLEARN_DATA_DIR"] = str(data_dir())
    with tempfile.TemporaryDirectory() as tmp:
        runs = {engine: _child(["tofu", engine, tmp, "capture" if engine == "generate" else "-"])
                for engine in ("generate", "native")}
        for key in runs["generate"]["eval_seconds"]:
            g, n = runs["generate"]["eval_seconds"][key], runs["native"]["eval_seconds"][key]
            print(f"   TOFU suite {key:<16} generate {g:.2f} s  native {n:.2f} s  ratio {g / n:.2f}x")
        total_g = sum(runs["generate"]["eval_seconds"].values())
        total_n = sum(runs["native"]["eval_seconds"].values())
        print(f"   TOFU suite, all stages: generate {total_g:.2f} s  native {total_n:.2f} s  "
              f"ratio {total_g / total_n:.2f}x; results.json and examples: "
              f"{_examples_equal(Path(tmp) / 'generate', Path(tmp) / 'native')}")
        for number, (stage, widened, batch, samples, rng) in enumerate(DECODE_CASES):
            if chosen is not None and number not in chosen:
                continue
            model_dir = Path(tmp) / "models" / stage
            repeats = "3" if widened == "no" else "1"
            pairs = []  # generate, native, generate, native, ...: each pair measured under the same machine state
            for _ in range(pairs_per_case):
                pairs.append([_child(["decode", str(model_dir), widened, str(batch), "200", str(samples), rng, engine,
                                      repeats]) for engine in ("generate", "native")])
            g, n = (min((pair[i] for pair in pairs), key=lambda r: r["seconds"]) for i in (0, 1))
            paired = statistics.median(pg["seconds"] / pn["seconds"] for pg, pn in pairs)
            stable = all(pair[i]["outputs"] == pairs[0][i]["outputs"] for pair in pairs for i in (0, 1))
            prompts = json.loads((model_dir / "prompts.json").read_text())
            bound = row_step_bound(g["outputs"], [len(p) for p in prompts], batch, samples, 200)
            lengths = [len(sample.split()) for o in g["outputs"] for sample in o]
            same = sum(a == b for a, b in zip(g["outputs"], n["outputs"]))
            label = {"no": "tiny", "yes": "widened", "random": "random-init"}[widened]
            how = f"{samples} samples {rng}" if samples else "greedy"
            print(f"   [{number}] {stage:<9} {label:<11} {g['params_m']:5.1f} M  {how:<18} batch {batch:>2}  {len(prompts)} prompts "
                  f"(mean {sum(lengths) / len(lengths):.0f} tokens, {sum(x >= 200 for x in lengths)} at 200)  "
                  f"generate {g['seconds']:.2f} s  native {n['seconds']:.2f} s (best of each)  ratio "
                  f"{paired:.2f}x median of {pairs_per_case} paired, {g['seconds'] / n['seconds']:.2f}x best/best  "
                  f"(row-step bound {bound:.2f}x)  peak +{g['peak_mib']:.0f} / +{n['peak_mib']:.0f} MiB  "
                  + (f"identical {same}/{len(prompts)}" if rng == "generate" else "(own streams)")
                  + ("" if stable else "  OUTPUTS VARIED BETWEEN RUNS"))


if __name__ == "__main__":
    main()
