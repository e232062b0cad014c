"""The stage-by-metric summary table printed at the end of a run."""

from __future__ import annotations

from typing import Dict, List

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from unlearn_cli.progress import console


def stage_order(metrics: Dict[str, float]) -> List[str]:
    seen: List[str] = []
    for key in metrics:
        stage = key.split("/", 1)[0]
        if stage not in seen:
            seen.append(stage)
    return seen


def table(metrics: Dict[str, float], title: str) -> Table:
    stages = stage_order(metrics)
    names: List[str] = []
    for key in metrics:
        name = key.split("/", 1)[1]
        if name not in names:
            names.append(name)
    tab = Table(title=title)
    tab.add_column("metric", style="bold")
    for stage in stages:
        tab.add_column(stage, justify="right")
    for name in names:
        row = [name]
        for stage in stages:
            val = metrics.get(f"{stage}/{name}")
            row.append("" if val is None else f"{val:.3f}")
        tab.add_row(*row)
    return tab


def print_summary(metrics: Dict[str, float], title: str) -> None:
    """Print the table at its natural width: a run with many attack stages stays readable (a narrow terminal
    wraps its lines; a log file keeps them whole) instead of squeezing every cell to an ellipsis."""
    tab = table(metrics, title)
    needed = Measurement.get(console, console.options.update_width(10_000), tab).maximum
    if needed <= console.width:
        console.print(tab)
        return
    Console(file=console.file, width=needed, force_terminal=console.is_terminal, no_color=console.no_color,
            highlight=False).print(tab)
