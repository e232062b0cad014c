"""`unlearn report` over synthetic finished runs: table, CSV, Pareto front and both plots."""

import csv
import json

import pytest

from unlearn_cli.errors import UserError
from unlearn_cli.report import pareto_front, report


def _run(root, name, method, seed, forget, retain, relearn):
    d = root / name
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"benchmark: {{name: fictional}}\nmethod: {{name: {method}}}\n"
                                   f"optimizer: {{name: adamw}}\nseed: {seed}\n")
    metrics = {"unlearned/forget_qa_acc": forget, "unlearned/retain_qa_acc": retain, "relearn/forget_qa_acc": relearn}
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
