"""Multi-process runs on CPU (gloo): DDP and DeepSpeed ZeRO-2/3 through the real CLI.

Two ranks split each global batch (rows rank::2) and average their losses and gradients; with the
same global batch the trajectory must match one process. The tolerance (relative 1e-3) covers the
one genuine difference: a token-mean loss averaged over two half-batches weights tokens slightly
differently from a token mean over the whole batch when the halves have different token counts
(measured here: ~2e-4), plus float reduction order.
"""

import json

import deepspeed  # noqa: F401 - the DeepSpeed path must be installed for these tests
import pytest

from _faults import logged, start, stop_when
from conftest import read_results, run_cli
from unlearn_cli.registry import OPTIMIZERS

STEPS = ["unlearn.steps=4", "skip=[eval_target,attack,eval_oracle]", "progress=false"]


def _losses(run_dir, key="loss"):
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if r["stage"] == "unlearn"]


@pytest.fixture(scope="module")
def single(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("single") / "run"
    run_cli(["run", *STEPS, f"output_dir={out}"], out.parent, cache_dir)
    return out


@pytest.mark.slow
def test_zero2_two_processes_reproduce_single_process_trajectory(single, cache_dir, tmp_path):
    out = tmp_path / "z2"
    proc = run_cli(["run", "distributed=zero2", "distributed.nproc_per_node=2", *STEPS, f"output_dir={out}"],
                   tmp_path, cache_dir)
    assert "launching 2 processes" in proc.stdout
    ref, got = _losses(single), _losses(out)
    assert len(got) == len(ref) == 4
    assert got == pytest.approx(ref, rel=1e-3)
    assert json.loads((out / "provenance.json").read_text())["world_size"] == 2
    assert read_results(out)["status"] == "complete"


def test_ddp_runs_and_matches(single, cache_dir, tmp_path):
    out = tmp_path / "ddp"
    run_cli(["run", "distributed=ddp", *STEPS, f"output_dir={out}"], tmp_path, cache_dir)
    assert _losses(out) == pytest.approx(_losses(single), rel=1e-3)


def test_zero3_runs_with_a_sharded_reference(cache_dir, tmp_path):
    out = tmp_path / "z3"
    run_cli(["run", "distributed=zero3", "method=npo", "unlearn.steps=3", "skip=[eval_target,attack,eval_oracle]",
             "progress=false", f"output_dir={out}"], tmp_path, cache_dir)
    res = read_results(out)
    assert res["status"] == "complete" and 0.0 <= res["metrics"]["unlearned/forget_qa_acc"] <= 1.0
    assert len(_losses(out)) == 3


@pytest.mark.slow
def test_zero2_killed_mid_unlearning_resumes_from_its_checkpoint(cache_dir, tmp_path):
    """SIGKILL every process of a 2-rank ZeRO-2 run (launcher, torchrun, ranks) mid-unlearning; the same command
    restores the engine checkpoint (weights, partitioned optimizer, scheduler, RNG, stream position) and ends with
    the metrics and the later losses of an uninterrupted 2-rank run."""
    args = ["distributed=zero2", "distributed.nproc_per_node=2", "unlearn.steps=8", "checkpoint_every=2",
            "skip=[eval_target,attack,eval_oracle]", "progress=false"]
    whole = tmp_path / "whole"
    run_cli(["run", *args, f"output_dir={whole}"], tmp_path, cache_dir)
    cut = tmp_path / "cut"
    proc = start(args, cut, cache_dir, tmp_path)
    assert stop_when(proc, lambda: logged(cut, "unlearn", min_step=4), run_dir=cut)
    assert (cut / "checkpoint" / "engine").is_dir() and not (cut / "results.json").exists()

    run_cli(["run", *args, f"output_dir={cut}"], tmp_path, cache_dir)
    prov = json.loads((cut / "provenance.json").read_text())
    assert prov["resumed_from_step"] in (3, 5) and prov["world_size"] == 2
    assert read_results(cut)["metrics"] == read_results(whole)["metrics"]
    resumed = _losses(cut)[-(7 - prov["resumed_from_step"]):]  # the re-run's steps
    assert resumed == _losses(whole)[prov["resumed_from_step"] + 1:]
    assert not (cut / "checkpoint").exists()


def test_a_sign_optimizer_runs_as_a_deepspeed_client_optimizer(single, cache_dir, tmp_path):
    """signadam (a custom torch optimizer) under ZeRO-2 follows its own 1-process trajectory: ZeRO hands it the
    flat fp32 partitions, and the sign is element-wise."""
    args = ["optimizer=signadam", *STEPS]
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli(["run", *args, f"output_dir={one}"], tmp_path, cache_dir)
    run_cli(["run", "distributed=zero2", "distributed.nproc_per_node=2", *args, f"output_dir={two}"], tmp_path,
            cache_dir)
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-3)
    assert _losses(one) != pytest.approx(_losses(single), rel=1e-6)  # it is not AdamW's trajectory


def test_gradient_penalty_double_backprop_runs_data_parallel(cache_dir, tmp_path):
    """gp's double back-prop through DDP (one all-reduce per backward) follows its 1-process trajectory, penalty
    included: the first pass's all-reduced gradient sets the same direction u on both ranks."""
    args = ["optimizer=gp", *STEPS]
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli(["run", *args, f"output_dir={one}"], tmp_path, cache_dir)
    run_cli(["run", "distributed=ddp", "distributed.nproc_per_node=2", *args, f"output_dir={two}"], tmp_path, cache_dir)
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-3)
    assert _losses(two, "gp_penalty") == pytest.approx(_losses(one, "gp_penalty"), rel=1e-2)
    assert min(_losses(one, "gp_penalty")) > 0


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS.names() if not OPTIMIZERS.get(n).first_order])
def test_an_optimizer_that_reevaluates_the_loss_is_refused_under_deepspeed(name, refuse, tmp_path):
    proc = refuse(["run", "distributed=zero2", f"optimizer={name}", *STEPS, f"output_dir={tmp_path / 'r'}"], tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1
    assert f"optimizer '{name}' re-evaluates the loss or keeps weight state" in lines[0] and "distributed=ddp" in lines[0]
