"""Fault injection: SIGKILL a run at several points (preparing its models, evaluating the target, unlearning,
attacking, writing results) and re-run the same command: it completes with exactly the metrics of an
uninterrupted run, and the stages that had finished are read back instead of redone. A truncated weight file in
the prepared-model cache is reported in one warning and rebuilt to the same numbers. Ctrl-C / SIGTERM print one
line with the command that resumes and exit 130 / 143."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from _faults import logged, start, stop_when
from conftest import read_results, run_cli

ARGS = ["checkpoint_every=4", "progress=false"]


def _start(run_dir: Path, cache: Path, cwd: Path):
    return start(ARGS, run_dir, cache, cwd)


@pytest.fixture(scope="module")
def reference_run(cache_dir, tmp_path_factory) -> Path:
    """The run directory of the same command run without interruption."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_cli(["run", *ARGS, f"output_dir={out}"], out.parent, cache_dir)
    return out


@pytest.fixture(scope="module")
def reference(reference_run) -> dict:
    """The metrics of the same command run without interruption."""
    return read_results(reference_run)["metrics"]


POINTS = {  # kill point -> (when to kill, the stages the re-run reads back)
    "eval_target": (lambda d: (d / "stages" / "oracle.json").exists(), {"oracle"}),
    "unlearn": (lambda d: logged(d, "unlearn", min_step=9), {"oracle", "target"}),
    "attack": (lambda d: logged(d, "attack relearn"), {"oracle", "target", "unlearned"}),
    "results": (lambda d: (d / "stages" / "relearn.json").exists(),
                {"oracle", "target", "unlearn", "unlearned", "relearn"}),  # nothing left to train for
}


@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_then_the_same_command_completes_with_identical_metrics(point, reference, cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    hit, restored = POINTS[point]
    assert stop_when(_start(run_dir, cache_dir, tmp_path), lambda: hit(run_dir)), f"the run ended before {point}"
    assert not (run_dir / "results.json").exists()

    run_cli(["run", *ARGS, f"output_dir={run_dir}"], tmp_path, cache_dir)
    assert read_results(run_dir)["status"] == "complete"
    assert read_results(run_dir)["metrics"] == reference
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert set(prov.get("resumed_stages", [])) == restored
    if point == "unlearn":  # unlearning continued from its last checkpoint (every 4 steps: after steps 3, 7, ...)
        assert prov["resumed_from_step"] >= 7 and prov["resumed_from_step"] % 4 == 3
    if point == "attack":  # the checkpoint written after the last of the 32 steps: no retraining
        assert prov["resumed_from_step"] == 31
    assert not (run_dir / "checkpoint").exists()
    for stage in ("oracle", "target", "unlearned", "relearn"):  # every stage's rows are in place
        assert (run_dir / "examples" / f"{stage}.jsonl").stat().st_size > 0


def test_a_finished_run_is_not_redone_and_another_config_is_refused(reference_run, cache_dir, refuse, tmp_path):
    """The uninterrupted run's directory (a run with checkpoints on), re-run: nothing is redone or rewritten."""
    run_dir = reference_run
    before = (run_dir / "results.json").read_text()
    proc = run_cli(["run", *ARGS, f"output_dir={run_dir}"], tmp_path, cache_dir)
    assert "already complete" in proc.stdout and (run_dir / "results.json").read_text() == before
    proc = refuse(["run", *ARGS, "method=npo", f"output_dir={run_dir}"], tmp_path)
    assert proc.returncode == 2 and "already holds a finished run of another config" in proc.stderr
    assert (run_dir / "results.json").read_text() == before


@pytest.mark.slow
def test_killed_while_preparing_then_a_truncated_cache_entry_is_rebuilt(reference, tmp_path):
    cache = tmp_path / "cache"  # cold: the prepare stage trains the target and the oracle
    first = tmp_path / "first"
    assert stop_when(_start(first, cache, tmp_path), lambda: logged(first, "prepare target", min_step=20))
    assert not any((cache / "prepared").glob("*-target-*"))
    run_cli(["run", *ARGS, f"output_dir={first}"], tmp_path, cache)
    assert read_results(first)["metrics"] == reference
    assert not list((cache / "prepared").glob(".tmp-*"))

    (target,) = (cache / "prepared").glob("fictional-target-*")
    weights = target / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    second = tmp_path / "second"
    proc = run_cli(["run", *ARGS, f"output_dir={second}"], tmp_path, cache)
    warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if "damaged" in line]  # the run's log
    assert len(warnings) == 1 and f"model.safetensors has {size // 2} bytes, {size} expected" in warnings[0]
    assert "rebuilding it" in warnings[0]
    assert weights.stat().st_size == size
    assert read_results(second)["metrics"] == reference


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_print_one_line_with_the_command_that_resumes(sig, code, cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, cache_dir, tmp_path)
    assert stop_when(proc, lambda: logged(run_dir, "unlearn", min_step=5), sig=sig)
    assert proc.returncode == code
    lines = [line for line in proc.stderr.read().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: interrupted ({sig.name}) during unlearn: finished stages are kept in {run_dir}")
    assert "unlearning resumes from its last checkpoint" in lines[0]
    assert lines[0].endswith(f"resume with: unlearn run {' '.join(ARGS)} output_dir={run_dir}")
    assert not (run_dir / "results.json").exists() and (run_dir / "stages" / "target.json").exists()
