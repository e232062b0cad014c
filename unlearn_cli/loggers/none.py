"""No per-step logging."""

from pathlib import Path

from unlearn_cli.contracts import Logger
from unlearn_cli.registry import LOGGERS


@LOGGERS.register("none")
class NoLogger(Logger):
    """Discards per-step logs (results.json, config.yaml and provenance.json are still written)."""

    def start(self, run_dir: Path, run_name: str, config: dict, group: str | None = None,
              resume: bool = False) -> None:
        pass

    def log(self, stage: str, step: int, values: dict) -> None:
        pass

    def summary(self, metrics: dict, images: dict | None = None) -> None:
        pass

    def close(self) -> None:
        pass
