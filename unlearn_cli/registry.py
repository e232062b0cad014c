"""Self-filling name registries.

Each component package (methods, optimizers, attacks, metrics, benchmarks, loggers, train plug-ins)
holds one module per component; every module decorates its class with ``@REGISTRY.register("name")``.
``Registry.load()`` imports all modules of the package once, so adding a component means adding
one module and one YAML file. Import errors propagate: a broken module is never skipped. A class
is checked against its kind's protocol (``unlearn_cli.contracts``) when it registers.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from pathlib import Path
from typing import Callable, Dict

from unlearn_cli import contracts
from unlearn_cli.errors import UserError, suggest


class Registry:
    """A name -> class map for one component kind, filled by importing its package."""

    def __init__(self, kind: str, package: str, protocol: type):
        self.kind = kind
        self.package = package
        self.protocol = protocol
        self._entries: Dict[str, type] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator registering ``cls`` under ``name`` (snake_case, unique) after checking it
        against the kind's protocol (TypeError naming the class and the member otherwise)."""

        def deco(cls: type) -> type:
            if name in self._entries and self._entries[name] is not cls:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            contracts.check(cls, self.protocol, self.kind, name)
            cls.registry_name = name
            self._entries[name] = cls
            return cls

        return deco

    def load(self) -> "Registry":
        """Import every module of the package (once)."""
        if not self._loaded:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True
        return self

    def names(self):
        return sorted(self.load()._entries)

    def get(self, name: str) -> type:
        """The class registered as ``name``; a UserError naming the valid choices otherwise."""
        self.load()
        if name not in self._entries:
            known = ", ".join(self.names())
            raise UserError(f"unknown {self.kind} '{name}';{suggest(name, self._entries)} known: {known}")
        return self._entries[name]

    def summaries(self):
        """(name, first docstring line) for every entry, read from the modules' source with ``ast`` -- nothing
        is imported, so ``unlearn list`` needs neither torch nor transformers."""
        pkg = importlib.util.find_spec(self.package)
        out = {}
        for folder in pkg.submodule_search_locations:
            for path in sorted(Path(folder).glob("*.py")):
                if path.name.startswith("_"):
                    continue
                for node in ast.walk(ast.parse(path.read_text(), str(path))):
                    if not isinstance(node, ast.ClassDef):
                        continue
                    for deco in node.decorator_list:
                        if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)
                                and deco.func.attr == "register" and deco.args
                                and isinstance(deco.args[0], ast.Constant)):
                            doc = (ast.get_docstring(node) or "").strip().splitlines()
                            out[deco.args[0].value] = doc[0] if doc else ""
        return sorted(out.items())

    def describe(self):
        """(name, first docstring line) for every entry."""
        out = []
        for name in self.names():
            doc = (self._entries[name].__doc__ or "").strip().splitlines()
            out.append((name, doc[0] if doc else ""))
        return out


METHODS = Registry("method", "unlearn_cli.methods", contracts.Method)
OPTIMIZERS = Registry("optimizer", "unlearn_cli.optimizers", contracts.OptimizerSpec)
ATTACKS = Registry("attack", "unlearn_cli.attacks", contracts.Attack)
METRICS = Registry("metric", "unlearn_cli.metrics", contracts.Metric)
BENCHMARKS = Registry("benchmark", "unlearn_cli.data.benchmarks", contracts.Benchmark)
LOGGERS = Registry("logger", "unlearn_cli.loggers", contracts.Logger)
PLUGINS = Registry("plugin", "unlearn_cli.train.plugins", contracts.TrainPlugin)

ALL = {r.kind: r for r in (METHODS, OPTIMIZERS, ATTACKS, METRICS, BENCHMARKS, LOGGERS, PLUGINS)}
BY_PROTOCOL = {r.protocol: r for r in ALL.values()}
