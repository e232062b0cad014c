"""Kill a run with SIGKILL mid-unlearning, re-run the same command: it resumes from the last
checkpoint and ends with exactly the metrics of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import read_results, run_cli

ARGS = ["unlearn.steps=40", "checkpoint_every=5", "skip=[eval_target,attack,eval_oracle]", "progress=false"]


def _unlearn_steps(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return [r["step"] for r in rows if r.get("stage") == "unlearn"]


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_to_identical_metrics(cache_dir, tmp_path):
    full = tmp_path / "uninterrupted"
    run_cli(["run", *ARGS, f"output_dir={full}"], tmp_path, cache_dir)

    cut = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "unlearn_cli", "run", *ARGS, f"output_dir={cut}"]
    env = dict(os.environ, UNLEARN_CACHE_DIR=str(cache_dir))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and max(_unlearn_steps(cut), default=-1) < 17 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_before = _unlearn_steps(cut)
    assert 17 <= max(steps_before) < 39, steps_before
    assert (cut / "checkpoint" / "trainer_state.pt").exists()
    assert not (cut / "results.json").exists()

    run_cli(["run", *ARGS, f"output_dir={cut}"], tmp_path, cache_dir)
    prov = json.loads((cut / "provenance.json").read_text())
    assert prov["resumed_from_step"] % 5 == 4 and prov["resumed_from_step"] >= 14
    assert read_results(cut)["metrics"] == read_results(full)["metrics"]
    assert not (cut / "checkpoint").exists()  # cleared once the run completed
