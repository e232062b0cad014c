"""PNG plots of a finished run (matplotlib, Agg backend): stage-by-stage bars of the main metrics
and leak@k curves. ``save_all`` returns ``{name: path}`` for ``logger.summary(images=...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

# The headline metrics plotted as bars, in this order, when present.
MAIN = ("forget_qa_acc", "retain_qa_acc", "forget_quality", "model_utility", "forget_truth_ratio",
        "forget_verbmem", "forget_knowmem", "retain_knowmem", "forget_privleak", "forget_rouge_l",
        "retain_rouge_l", "forget_answer_prob")


def subplots(rows: int = 1, cols: int = 1, **kwargs):
    """``(figure, axes)`` through matplotlib's object API: a ``Figure`` not registered with pyplot (no backend
    or display state, nothing to close; importing pyplot alone costs about 0.2 s), ``kwargs`` as
    ``pyplot.subplots`` takes them (``figsize`` for the figure, the rest for ``Figure.subplots``)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(rows, cols, **kwargs)


def colour(name: str, index: int):
    """Colour ``index`` of matplotlib colormap ``name`` (``tab20``: 20 distinct colours)."""
    from matplotlib import colormaps
    return colormaps[name](index)


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Tight layout, PNG at ``dpi``."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _main_names(metrics: Dict[str, float]) -> List[str]:
    names = []
    for key in metrics:
        name = key.split("/", 1)[1]
        if name not in names and (name in MAIN or name.endswith("_mcq_acc") or "leak@" in name):
            names.append(name)
    return names[:12]


def stage_bars(run_dir: Path, metrics: Dict[str, float]) -> Path | None:
    """One panel per headline metric, one bar per stage."""
    names = _main_names(metrics)
    if not names:
        return None
    stages = []
    for key in metrics:
        stage = key.split("/", 1)[0]
        if stage not in stages:
            stages.append(stage)
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        vals = [metrics.get(f"{s}/{name}", float("nan")) for s in stages]
        ax.bar(range(len(stages)), vals, color=[f"C{i}" for i in range(len(stages))])
        ax.set_xticks(range(len(stages)), stages, rotation=30, fontsize=7)
        ax.set_title(name, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return save_figure(fig, Path(run_dir) / "metrics_by_stage.png")


def leak_curves(run_dir: Path, artifacts: Dict[str, dict]) -> Path | None:
    """leak@k against k (log2 axis): one panel per split, one line per stage and sampling policy."""
    curves = {stage: art["leak_at_k"] for stage, art in artifacts.items() if art.get("leak_at_k")}
    splits = sorted({split for per_stage in curves.values() for split in per_stage})
    if not splits:
        return None
    fig, axes = subplots(1, len(splits), figsize=(4.5 * len(splits), 3.4), squeeze=False)
    for ax, split in zip(axes.flat, splits):
        for stage, per_stage in curves.items():
            for policy, res in per_stage.get(split, {}).items():
                ks = sorted(res["leak"])
                ax.plot(ks, [res["leak"][k] for k in ks], marker="o", ms=3, label=f"{stage} {policy}")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("k")
        ax.set_ylabel(f"{split} leak@k")
        ax.legend(fontsize=6)
    return save_figure(fig, Path(run_dir) / "leak_at_k.png")


def save_all(run_dir: Path, metrics: Dict[str, float], artifacts: Dict[str, dict]) -> Dict[str, str]:
    out = {}
    for name, path in (("metrics_by_stage", stage_bars(run_dir, metrics)), ("leak_at_k", leak_curves(run_dir, artifacts))):
        if path is not None:
            out[name] = str(path)
    return out
