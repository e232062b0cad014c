"""Every registered optimizer unlearns the embedded default with its own tuning (conf/tuning/optimizer/), as a user
runs it: ``unlearn run method=simnpo optimizer=<name>``, QA accuracy only (the other metrics and stages add nothing
to what is checked here)."""

from __future__ import annotations

import pytest

from conftest import read_results, run_cli
from unlearn_cli.registry import OPTIMIZERS

QA_ONLY = ["~eval.metrics.answer_prob", "~eval.metrics.rouge_l", "eval.metrics.qa_acc.splits=[forget,retain]",
           "skip=[attack,eval_oracle]", "progress=false"]


@pytest.mark.slow
@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_unlearns_the_embedded_default(name, cache_dir, tmp_path):
    run_cli(["run", "method=simnpo", f"optimizer={name}", *QA_ONLY, "output_dir=run"], tmp_path, cache_dir)
    m = read_results(tmp_path / "run")["metrics"]
    assert m["unlearned/forget_qa_acc"] <= 0.5, m
    assert m["unlearned/retain_qa_acc"] >= 0.7 * m["target/retain_qa_acc"], m


def test_the_robustness_preset_sweeps_every_registered_optimizer():
    from omegaconf import OmegaConf

    from conftest import REPO

    preset = OmegaConf.load(REPO / "conf" / "experiment" / "optimizer_robustness.yaml")
    assert sorted(str(preset.hydra.sweeper.params.optimizer).split(",")) == OPTIMIZERS.names()
    assert len(str(preset.hydra.sweeper.params.seed).split(",")) >= 3


def test_the_presets_sweep_points_are_validated_before_any_runs(refuse, tmp_path):
    """``optimizer.rho=0.5`` is a key of the preset's sam / gp / cr points but not of adamw's: one line before
    anything runs, and no run directory is made."""
    proc = refuse(["run", "-m", "experiment=optimizer_robustness", "optimizer.rho=0.5"], tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "optimizer.rho" in lines[0]
    assert not (tmp_path / "outputs").exists()
