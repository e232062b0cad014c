"""``unlearn report DIR``: one table over every finished run below DIR, a table over seeds, plus two plots.

Writes ``report.md`` and ``report.csv`` (one row per run, one column per ``stage/metric``), a
forget-vs-utility scatter with the Pareto front (``pareto.png``) and per-attack recovery bars
(``attack_recovery.png``: a configuration x attack heat map of how much of the forget metric each attack brings
back, mean over seeds), and for an attack run at
two or more step budgets (``relearn``, ``relearn_30``) its recovery curve (``recovery_<attack>.png``). Runs that differ only in
their seeds (every key named ``seed`` or ``*_seed``) form one configuration; ``report.md`` and the printout add a table of each configuration's mean and
sample standard deviation over its seeds (the robustness table: configuration x attack): the forget metric of the
target, after unlearning and after every attack stage, and the utility metric after unlearning. Where the runs
have a worst case over their attacks (``worst/<forget metric>``), it is a column that ranks the configurations,
most robust first, with the strongest attack and the share of the forgotten gap it recovers.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Dict, List, Optional

from omegaconf import OmegaConf

from unlearn_cli.errors import UserError
from unlearn_cli.files import atomic_write_text
from unlearn_cli.plots import colour, save_figure, subplots
from unlearn_cli.worst_case import STAGE

ID_COLUMNS = ("run", "benchmark", "method", "optimizer", "seed")
NOT_CONFIGURATION = ("output_dir", "output_root", "sweep_name", "overwrite", "progress", "threads", "cache_dir", "logger",
                     "checkpoint_every")  # what may differ between runs of one configuration, besides the seeds
BASE_KEYS = ("base", "fo", "zo")  # nested optimizer sections a wrapper names in its label


def collect(root: Path) -> List[Dict]:
    """Every finished run (results.json with status complete) below ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"report: '{root}' is not a directory")
    runs = []
    for res in sorted(root.rglob("results.json")):
        data = json.loads(res.read_text())
        if data.get("status") != "complete":
            continue
        cfg_path = res.parent / "config.yaml"
        cfg = OmegaConf.to_container(OmegaConf.load(cfg_path)) if cfg_path.exists() else {}
        runs.append({
            "run": str(res.parent.relative_to(root)) if res.parent != root else res.parent.name,
            "benchmark": (cfg.get("benchmark") or {}).get("name", ""),
            "method": (cfg.get("method") or {}).get("name", ""),
            "optimizer": optimizer_label(cfg.get("optimizer") or {}),
            "seed": cfg.get("seed", ""),
            "metrics": data.get("metrics", {}),
            "configuration": json.dumps(_without_seeds({k: v for k, v in cfg.items() if k not in NOT_CONFIGURATION}),
                                        sort_keys=True, default=str),
            "budgets": {aid: (a.get("name", aid), a["steps"]) for aid, a in (cfg.get("attack") or {}).items()
                        if isinstance(a, dict) and isinstance(a.get("steps"), int)},
        })
    if not runs:
        raise UserError(f"report: no finished run (results.json with status complete) below '{root}'")
    return runs


def _without_seeds(value):
    """``value`` without the keys named ``seed`` or ``*_seed`` at any depth (the run seed, and settings such as a
    zeroth-order optimizer's ``seed: ${seed}`` that follow it)."""
    if isinstance(value, dict):
        return {k: _without_seeds(v) for k, v in value.items() if not (k == "seed" or str(k).endswith("_seed"))}
    if isinstance(value, list):
        return [_without_seeds(v) for v in value]
    return value


def optimizer_label(section: Dict) -> str:
    """``sam(adamw)``, ``hybrid(adamw,zo_sgd)``: an optimizer with the bases it wraps."""
    bases = [optimizer_label(section[k]) for k in BASE_KEYS if isinstance(section.get(k), dict)]
    return str(section.get("name", "")) + (f"({','.join(bases)})" if bases else "")


def _mean_spread(values: List[float]) -> str:
    if not values:
        return ""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"


def by_configuration(runs: List[Dict]) -> Dict[str, List[Dict]]:
    """Runs grouped by their configuration (everything but the seeds), in first-seen order."""
    groups: Dict[str, List[Dict]] = {}
    for run in runs:
        groups.setdefault(run["configuration"], []).append(run)
    return groups


def _mean(members: List[Dict], key: str) -> Optional[float]:
    values = [r["metrics"][key] for r in members if key in r["metrics"]]
    return statistics.fmean(values) if values else None


def _strongest(members: List[Dict], attacks: List[str], forget_metric: str) -> str:
    """The attack whose mean forget value comes closest to the target's (without a target stage: the one that moves
    it furthest from the unlearned value)."""
    target, unlearned = _mean(members, f"target/{forget_metric}"), _mean(members, f"unlearned/{forget_metric}")
    scored = [(a, m) for a in attacks if (m := _mean(members, f"{a}/{forget_metric}")) is not None]
    if not scored:
        return ""
    if target is not None:
        return min(scored, key=lambda am: abs(am[1] - target))[0]
    if unlearned is not None:
        return max(scored, key=lambda am: abs(am[1] - unlearned))[0]
    return ""


def _recovered(members: List[Dict], forget_metric: str) -> str:
    """``(worst - unlearned) / (target - unlearned)`` of the means: the share of what unlearning removed that the
    worst attack brings back."""
    target, unlearned = _mean(members, f"target/{forget_metric}"), _mean(members, f"unlearned/{forget_metric}")
    worst = _mean(members, f"{STAGE}/{forget_metric}")
    if None in (target, unlearned, worst) or abs(target - unlearned) < 1e-12:
        return ""
    return f"{(worst - unlearned) / (target - unlearned):.2f}"


def seed_table(runs: List[Dict], forget_metric: str, utility_metric: str) -> str:
    """Markdown robustness table: one row per configuration (runs equal in everything but the seed), with ``n``
    seeds and ``mean ± sample std`` of ``<stage>/<forget_metric>`` for the target (when the runs have it),
    ``unlearned``, each attack stage and the worst case over attacks, and of ``unlearned/<utility_metric>``; with a
    worst case also the strongest attack and the share of the forgotten gap it recovers
    (``(worst - unlearned) / (target - unlearned)``). Ranked most robust first: the largest mean distance of the
    worst case from the target (the lowest mean worst case without a target stage)."""
    groups = by_configuration(runs)
    attacks = sorted({k.split("/")[0] for r in runs for k in r["metrics"]
                      if k.endswith(f"/{forget_metric}")} - {"target", "unlearned", "oracle", STAGE})
    worst = [STAGE] if any(f"{STAGE}/{forget_metric}" in r["metrics"] for r in runs) else []
    target = ["target"] if any(f"target/{forget_metric}" in r["metrics"] for r in runs) else []
    stages = target + ["unlearned"] + attacks + worst
    head = ["benchmark", "method", "optimizer", "n"] + [f"{s}/{forget_metric}" for s in stages] + \
        [f"unlearned/{utility_metric}"] + (["strongest attack", "recovered"] if worst else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    labels: Dict[str, int] = {}
    if worst:  # most robust first
        key = f"{STAGE}/{forget_metric}"

        def robustness(members):
            gaps = [abs(r["metrics"][key] - r["metrics"][f"target/{forget_metric}"]) for r in members
                    if key in r["metrics"] and f"target/{forget_metric}" in r["metrics"]]
            if gaps:
                return -statistics.fmean(gaps)
            return statistics.fmean([r["metrics"][key] for r in members if key in r["metrics"]] or [float("inf")])
        groups = dict(sorted(groups.items(), key=lambda g: robustness(g[1])))
    for members in groups.values():
        first = members[0]
        label = f"{first['benchmark']}/{first['method']}/{first['optimizer']}"
        labels[label] = labels.get(label, 0) + 1
        name = first["optimizer"] + (f" #{labels[label]}" if labels[label] > 1 else "")
        cells = [first["benchmark"], first["method"], name, str(len(members))]
        for key in [f"{s}/{forget_metric}" for s in stages] + [f"unlearned/{utility_metric}"]:
            cells.append(_mean_spread([r["metrics"][key] for r in members if key in r["metrics"]]))
        if worst:
            cells += [_strongest(members, attacks, forget_metric), _recovered(members, forget_metric)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def metric_columns(runs: List[Dict]) -> List[str]:
    cols: List[str] = []
    for run in runs:
        for key in run["metrics"]:
            if key not in cols:
                cols.append(key)
    return cols


def to_csv(runs: List[Dict], cols: List[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(list(ID_COLUMNS) + cols)
    for run in runs:
        writer.writerow([run[c] for c in ID_COLUMNS] + [run["metrics"].get(c, "") for c in cols])
    return buf.getvalue()


def to_markdown(runs: List[Dict], cols: List[str]) -> str:
    head = list(ID_COLUMNS[1:]) + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        vals = [str(run[c]) for c in ID_COLUMNS[1:]]
        vals += [f"{run['metrics'][c]:.3f}" if c in run["metrics"] else "" for c in cols]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def pareto_front(points: List[tuple]) -> List[int]:
    """Indices of points not dominated in (lower forget, higher utility)."""
    front = []
    for i, (f, u) in enumerate(points):
        if not any((f2 <= f and u2 >= u) and (f2 < f or u2 > u) for j, (f2, u2) in enumerate(points) if j != i):
            front.append(i)
    return front


def _label(run: Dict) -> str:
    return f"{run['method']}/{run['optimizer']}/s{run['seed']}"


def plot_pareto(runs: List[Dict], forget_key: str, utility_key: str, path: Path) -> Optional[Path]:
    pts = [(r["metrics"][forget_key], r["metrics"][utility_key], r) for r in runs
           if forget_key in r["metrics"] and utility_key in r["metrics"]]
    if not pts:
        return None
    fig, ax = subplots(figsize=(6, 4.5))
    front = set(pareto_front([(f, u) for f, u, _ in pts]))
    methods = sorted({r["method"] for _, _, r in pts})
    for m_idx, method in enumerate(methods):
        xs = [u for f, u, r in pts if r["method"] == method]
        ys = [f for f, u, r in pts if r["method"] == method]
        ax.scatter(xs, ys, label=method, s=40, color=colour("tab20", m_idx % 20), marker="osD^v<>"[m_idx % 7])
    for i, (f, u, r) in enumerate(pts):
        ax.annotate(_label(r), (u, f), fontsize=7, xytext=(3, 3), textcoords="offset points")
    fr = sorted((pts[i][1], pts[i][0]) for i in front)
    ax.plot([u for u, _ in fr], [f for _, f in fr], "k--", lw=1, label="Pareto front")
    ax.set_xlabel(f"{utility_key} (higher is better)")
    ax.set_ylabel(f"{forget_key} (lower is better)")
    ax.set_title("Forgetting vs utility")
    return _save(fig, ax, path)


def _save(fig, ax, path: Path) -> Path:
    """Legend, layout, PNG at 120 dpi."""
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def plot_recovery(runs: List[Dict], forget_metric: str, path: Path) -> Optional[Path]:
    """Heat map of the mean over seeds of ``<attack>/<forget_metric> - unlearned/<forget_metric>``: one row per
    configuration (as in the robustness table), one column per attack stage, each cell annotated."""
    base_key = f"unlearned/{forget_metric}"
    attacks = sorted({k.split("/")[0] for r in runs for k in r["metrics"] if k.endswith(f"/{forget_metric}")}
                     - {"target", "unlearned", "oracle", STAGE})
    groups = by_configuration([r for r in runs if base_key in r["metrics"]])
    if not attacks or not groups:
        return None
    labels, grid = [], []
    for members in groups.values():
        label = f"{members[0]['method']}/{members[0]['optimizer']}"
        labels.append(label + (f" #{labels.count(label) + 1}" if label in labels else "") + f" (n={len(members)})")
        row = []
        for attack in attacks:
            gaps = [r["metrics"][f"{attack}/{forget_metric}"] - r["metrics"][base_key] for r in members
                    if f"{attack}/{forget_metric}" in r["metrics"]]
            row.append(statistics.fmean(gaps) if gaps else float("nan"))
        grid.append(row)
    fig, ax = subplots(figsize=(min(40, 2 + 0.9 * len(attacks)), 1.5 + 0.45 * len(labels)))
    bound = max([abs(v) for row in grid for v in row if v == v] + [1e-9])
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:
                ax.text(j, i, f"{value:+.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(value) > 0.6 * bound else "black")
    ax.set_xticks(range(len(attacks)), attacks, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    fig.colorbar(image, ax=ax, label="attacked − unlearned")
    ax.set_title(f"Recovery of forgotten knowledge per attack: {forget_metric}, mean over seeds")
    return save_figure(fig, path, dpi=120)


def budget_curves(runs: List[Dict], forget_metric: str) -> Dict[str, Dict[str, List[tuple]]]:
    """For every attack kind run at two or more step budgets: per configuration, ``[(steps, mean over seeds of
    <instance>/<forget_metric>)]`` from budget 0 (the unlearned value) upwards."""
    values: Dict[tuple, Dict[int, List[float]]] = {}  # (kind, label) -> steps -> one value per run
    for run in runs:
        label = f"{run['method']}/{run['optimizer']}"
        per_kind: Dict[str, Dict[int, float]] = {}
        for attack_id, (kind, steps) in run.get("budgets", {}).items():
            if f"{attack_id}/{forget_metric}" in run["metrics"]:
                per_kind.setdefault(kind, {})[steps] = run["metrics"][f"{attack_id}/{forget_metric}"]
        for kind, points in per_kind.items():
            if f"unlearned/{forget_metric}" in run["metrics"]:
                points.setdefault(0, run["metrics"][f"unlearned/{forget_metric}"])
            for steps, value in points.items():
                values.setdefault((kind, label), {}).setdefault(steps, []).append(value)
    out: Dict[str, Dict[str, List[tuple]]] = {}
    for (kind, label), points in values.items():
        if len([k for k in points if k]) >= 2:
            out.setdefault(kind, {})[label] = sorted((k, statistics.fmean(v)) for k, v in points.items())
    return out


def plot_budget_curves(runs: List[Dict], forget_metric: str, root: Path) -> List[Path]:
    """``recovery_<attack>.png``: the forget metric against the attack's step budget, one line per configuration
    (mean over seeds; budget 0 is the unlearned model)."""
    paths = []
    for kind, lines in budget_curves(runs, forget_metric).items():
        fig, ax = subplots(figsize=(6, 4.5))
        for i, (label, line) in enumerate(sorted(lines.items())):  # 20 colours x 7 markers: no two lines alike
            ax.plot([k for k, _ in line], [v for _, v in line], marker="osD^v<>"[i % 7], color=colour("tab20", i % 20),
                    label=label)
        ax.set_xlabel(f"{kind} steps")
        ax.set_ylabel(f"{forget_metric} (mean over seeds)")
        ax.set_title(f"Recovery against the {kind} budget")
        paths.append(_save(fig, ax, root / f"recovery_{kind}.png"))
    return paths


def report(root: Path, forget_metric: str = "forget_qa_acc", utility_metric: str = "retain_qa_acc") -> Dict[str, Path]:
    """Write report.md, report.csv and the plots into ``root``; print the markdown table."""
    root = Path(root)
    runs = collect(root)
    cols = metric_columns(runs)
    md = to_markdown(runs, cols)
    md += (f"\nRobustness over seeds (mean ± sample standard deviation; most robust first):\n\n"
           f"{seed_table(runs, forget_metric, utility_metric)}")
    atomic_write_text(root / "report.md", md)
    atomic_write_text(root / "report.csv", to_csv(runs, cols))
    print(md)
    out = {"markdown": root / "report.md", "csv": root / "report.csv"}
    pareto = plot_pareto(runs, f"unlearned/{forget_metric}", f"unlearned/{utility_metric}", root / "pareto.png")
    recovery = plot_recovery(runs, forget_metric, root / "attack_recovery.png")
    for name, path in (("pareto", pareto), ("recovery", recovery)):
        if path is not None:
            out[name] = path
            print(f"{name}: {path}")
    for path in plot_budget_curves(runs, forget_metric, root):
        out[path.stem] = path
        print(f"{path.stem}: {path}")
    return out
