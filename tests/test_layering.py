"""Every import in the package points down the layer order (read from the source with ``ast``, function-level
imports included): data never imports eval, models never import train, eval never imports metrics, ..."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "unlearn_cli"

# lowest first; a module may import its own layer and the layers before it, never one after it
LAYERS = [
    ("base", ["errors", "files", "contracts", "registry", "binding", "progress", "seeding", "rundir", "provenance", "resolvers", "bounds", "manifest", "stage_records", "eval_cache", "interrupts", "worst_case"]),
    ("data", ["data"]),
    ("losses", ["losses"]),
    ("models", ["models"]),
    ("components of training", ["methods", "optimizers"]),
    ("train", ["train"]),
    ("eval", ["eval"]),
    ("metrics", ["metrics"]),
    ("attacks", ["attacks"]),
    ("loggers", ["loggers", "summary", "plots", "report"]),
    ("top", ["components", "outputs", "pipeline", "cli", "__main__", "__init__"]),
]
# siblings that must not know each other although neither is above the other in spirit
FORBIDDEN = {("train", "eval"), ("eval", "train"), ("methods", "train"), ("eval", "methods"), ("eval", "optimizers")}
RANK = {part: i for i, (_, parts) in enumerate(LAYERS) for part in parts}


def _part(module: str) -> str:
    """``unlearn_cli.eval.scorer`` -> ``eval``; ``unlearn_cli.pipeline`` -> ``pipeline``."""
    return module.split(".")[1] if "." in module else "__init__"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        yield ".".join(rel.parts), path


def _imports(path: Path, module: str):
    tree = ast.parse(path.read_text(), str(path))
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            targets = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
            for target in targets:
                yield target, node.lineno


def _edges():
    for module, path in _modules():
        for target, line in _imports(path, module):
            if target.startswith("unlearn_cli.") or target == "unlearn_cli":
                if target == "unlearn_cli":
                    continue
                yield module, _part(module), _part(target), f"{path.relative_to(PACKAGE.parent)}:{line}", target


def test_every_package_part_has_a_layer():
    parts = {_part(m) for m, _ in _modules()}
    assert parts <= set(RANK), f"add to LAYERS: {sorted(parts - set(RANK))}"


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_imports_point_down(layer):
    parts = dict(LAYERS)[layer]
    bad = []
    for module, src, dst, where, target in _edges():
        if src not in parts or dst not in RANK:
            continue
        if RANK[dst] > RANK[src] or (src, dst) in FORBIDDEN:
            bad.append(f"{where} imports {target} ({dst} is above {src})")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The checker itself: a module of ``data`` importing ``eval`` is reported."""
    fake = tmp_path / "unlearn_cli" / "data"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("from unlearn_cli.eval.scorer import StageScorer\n")
    found = list(_imports(fake / "bad.py", "unlearn_cli.data.bad"))
    assert found == [("unlearn_cli.eval.scorer", 1)]
    assert RANK[_part(found[0][0])] > RANK[_part("unlearn_cli.data.bad")]
