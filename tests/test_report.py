"""`unlearn report` over synthetic finished runs: table, CSV, Pareto front and both plots."""

import csv
import json

import pytest

from unlearn_cli.errors import UserError
from unlearn_cli.report import pareto_front, report


def _run(root, name, method, seed, forget, retain, relearn, optimizer="{name: adamw}", lr=1e-4, extra=None):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"benchmark: {{name: fictional}}\nmethod: {{name: {method}}}\n"
                                   f"optimizer: {optimizer}\nseed: {seed}\nunlearn: {{lr: {lr}}}\n"
                                   f"output_dir: {name}\n")
    metrics = {"unlearned/forget_qa_acc": forget, "unlearned/retain_qa_acc": retain, "relearn/forget_qa_acc": relearn,
               **(extra or {})}
    (d / "results.json").write_text(json.dumps({"status": "complete", "metrics": metrics}))


def test_pareto_front_keeps_only_non_dominated_points():
    # (forget, utility): lower forget and higher utility are better
    pts = [(0.1, 0.9), (0.2, 0.95), (0.3, 0.8), (0.1, 0.85)]
    assert sorted(pareto_front(pts)) == [0, 1]


def test_report_writes_table_csv_and_plots(tmp_path, capsys):
    _run(tmp_path, "a", "ga", 0, 0.13, 0.64, 0.74)
    _run(tmp_path, "b", "simnpo", 0, 0.02, 0.99, 0.09)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.json").write_text(json.dumps({"status": "failed: nan", "metrics": {}}))
    out = report(tmp_path)
    printed = capsys.readouterr().out
    assert "| fictional | ga | adamw | 0 | 0.130 |" in printed
    rows = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [r["method"] for r in rows] == ["ga", "simnpo"]  # the failed run is left out
    assert float(rows[1]["relearn/forget_qa_acc"]) == pytest.approx(0.09)
    for key in ("pareto", "recovery"):
        assert out[key].exists() and out[key].stat().st_size > 1000


def test_report_on_a_dir_without_runs_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no finished run"):
        report(tmp_path)


def test_report_averages_each_configuration_over_its_seeds(tmp_path, capsys):
    """Three seeds of SAM, two of AdamW, one AdamW run at another lr (its own configuration); mean and sample
    standard deviation per stage; a second attack stage gets its own column."""
    sam = "{name: sam, rho: 0.01, base: {name: adamw}}"
    for seed, (f, r) in enumerate([(0.1, 0.2), (0.2, 0.4), (0.3, 0.9)]):
        _run(tmp_path, f"sam{seed}", "simnpo", seed, f, 0.9, r, optimizer=sam, extra={"relearn_30/forget_qa_acc": 1.0})
    _run(tmp_path, "adamw0", "simnpo", 0, 0.0, 1.0, 0.5)
    _run(tmp_path, "adamw1", "simnpo", 1, 0.5, 0.8, 0.7)
    _run(tmp_path, "adamw_lr", "simnpo", 0, 0.25, 0.7, 0.6, lr=1e-3)
    report(tmp_path)
    printed = capsys.readouterr().out
    assert ("| benchmark | method | optimizer | n | unlearned/forget_qa_acc | relearn/forget_qa_acc | "
            "relearn_30/forget_qa_acc | unlearned/retain_qa_acc |") in printed
    assert "| fictional | simnpo | sam(adamw) | 3 | 0.200 ± 0.100 | 0.500 ± 0.361 | 1.000 ± 0.000 | 0.900 ± 0.000 |" \
        in printed
    assert "| fictional | simnpo | adamw | 2 | 0.250 ± 0.354 | 0.600 ± 0.141 |  | 0.900 ± 0.141 |" in printed
    assert "| fictional | simnpo | adamw #2 | 1 | 0.250 ± 0.000 | 0.600 ± 0.000 |  | 0.700 ± 0.000 |" in printed
    assert "0.200 ± 0.100" in (tmp_path / "report.md").read_text()


def test_the_seed_table_ranks_configurations_by_their_worst_case(tmp_path, capsys):
    for seed, worst in enumerate([0.6, 0.8]):
        _run(tmp_path, f"ga{seed}", "ga", seed, 0.1, 0.8, worst, extra={"worst/forget_qa_acc": worst})
    for seed, worst in enumerate([0.2, 0.4]):
        _run(tmp_path, f"npo{seed}", "npo", seed, 0.1, 0.9, worst, extra={"worst/forget_qa_acc": worst})
    report(tmp_path)
    table = capsys.readouterr().out.split("Robustness over seeds")[1]
    assert "| relearn/forget_qa_acc | worst/forget_qa_acc | unlearned/retain_qa_acc |" in table
    assert table.index("| npo |") < table.index("| ga |")  # npo's worst case 0.3 beats ga's 0.7
    assert "| fictional | npo | adamw | 2 | 0.100 ± 0.000 | 0.300 ± 0.141 | 0.300 ± 0.141 | 0.900 ± 0.000 |" in table


def test_budgeted_attacks_get_a_recovery_curve(tmp_path, capsys):
    """Two relearning budgets (10 and 30 steps) over two seeds: the curve is the mean at 0 (unlearned), 10, 30."""
    from unlearn_cli.report import budget_curves

    for seed, (u, r10, r30) in enumerate([(0.0, 0.2, 0.6), (0.2, 0.4, 1.0)]):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "config.yaml").write_text(
            f"benchmark: {{name: fictional}}\nmethod: {{name: npo}}\noptimizer: {{name: adamw}}\nseed: {seed}\n"
            "attack: {relearn: {name: relearn, steps: 10}, relearn_30: {name: relearn, steps: 30}}\n")
        metrics = {"unlearned/forget_qa_acc": u, "relearn/forget_qa_acc": r10, "relearn_30/forget_qa_acc": r30,
                   "unlearned/retain_qa_acc": 0.9}
        (d / "results.json").write_text(json.dumps({"status": "complete", "metrics": metrics}))
    from unlearn_cli.report import collect

    curves = budget_curves(collect(tmp_path), "forget_qa_acc")
    assert list(curves) == ["relearn"]
    line = curves["relearn"]["npo/adamw"]
    assert [k for k, _ in line] == [0, 10, 30] and [v for _, v in line] == pytest.approx([0.1, 0.3, 0.8])
    out = report(tmp_path)
    assert out["recovery_relearn"].exists() and out["recovery_relearn"].stat().st_size > 1000
    assert "recovery_relearn:" in capsys.readouterr().out


def test_the_robustness_table_names_the_strongest_attack_and_the_recovered_share(tmp_path, capsys):
    """With a target stage: ranked by the worst case's distance from the target; the strongest attack is the one
    closest to the target; recovered = (worst - unlearned) / (target - unlearned) of the means."""
    for seed, (soft, relearn) in enumerate([(0.5, 0.3), (0.7, 0.3)]):  # soft prompt is ga's strongest attack
        _run(tmp_path, f"ga{seed}", "ga", seed, 0.1, 0.8, relearn,
             extra={"target/forget_qa_acc": 1.0, "soft_prompt/forget_qa_acc": soft, "worst/forget_qa_acc": soft})
    _run(tmp_path, "npo0", "npo", 0, 0.0, 0.9, 0.2,
         extra={"target/forget_qa_acc": 1.0, "soft_prompt/forget_qa_acc": 0.1, "worst/forget_qa_acc": 0.2})
    report(tmp_path)
    table = capsys.readouterr().out.split("Robustness over seeds")[1]
    assert ("| target/forget_qa_acc | unlearned/forget_qa_acc | relearn/forget_qa_acc | soft_prompt/forget_qa_acc | "
            "worst/forget_qa_acc | unlearned/retain_qa_acc | strongest attack | recovered |") in table
    assert "| 0.600 ± 0.141 | 0.800 ± 0.000 | soft_prompt | 0.56 |" in table  # (0.6 - 0.1) / (1.0 - 0.1)
    assert "| 0.200 ± 0.000 | 0.900 ± 0.000 | relearn | 0.20 |" in table
    assert table.index("| npo |") < table.index("| ga |")  # npo's worst case stays 0.8 from the target, ga's 0.4
