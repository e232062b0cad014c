"""Rich progress bars and console shared by all stages (quiet when ``enabled`` is False)."""

from __future__ import annotations

import contextlib
import logging
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=False)
ENABLED = {"value": True}


def set_enabled(flag: bool) -> None:
    ENABLED["value"] = bool(flag)


@contextlib.contextmanager
def bar(description: str, total: int):
    """Yield ``advance(n=1, **fields)``; renders a bar on a terminal, nothing otherwise."""
    if not ENABLED["value"] or not sys.stdout.isatty():
        yield lambda n=1, **fields: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
    with Progress(*columns, console=console, transient=False) as prog:
        task = prog.add_task(description, total=total, info="")

        def advance(n: int = 1, **fields):
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            prog.update(task, advance=n, info=info)

        yield advance


def quiet_libraries() -> None:
    """Silence third-party chatter (HF weight-loading bars, absl INFO lines from rouge_score)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    logging.getLogger("absl").setLevel(logging.WARNING)
