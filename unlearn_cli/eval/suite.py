"""The evaluation suite of a run: its metric instances scored on one model per stage.

``EvalSuite`` checks, before anything runs, that every split a metric reads exists (after each
metric's ``resolve``), then ``evaluate(stage, model)`` scores every metric through one shared
``StageScorer`` (greedy requests pooled first) and returns ``{key: value}``. An instance whose id
differs from its registry name prefixes its keys with ``<id>/``, so two instances of one metric
never collide. The oracle and target scorers are kept as the run's baselines; every stage's per-example
rows come back with its values (``eval.examples``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from unlearn_cli.data.encoding import bos_ids
from unlearn_cli.errors import UserError
from unlearn_cli.eval.decode import DecodeSettings
from unlearn_cli.eval.examples import stage_rows
from unlearn_cli.eval.inputs import EvalInputs
from unlearn_cli.eval.scorer import Baselines, StageScorer
from unlearn_cli.eval.views import PromptView
from unlearn_cli.models.adversarial_tokens import overriding


@dataclass
class StageResult:
    """What evaluating one stage produced: ``{key: value}``, curves, and one row per evaluated item."""

    values: Dict[str, float]
    artifacts: dict
    examples: List[dict]


class EvalSuite:
    """Metric instances by id, the run's evaluation inputs and the baselines of earlier stages."""

    def __init__(self, metrics: Dict[str, object], inputs: EvalInputs, decode: DecodeSettings, benchmark: str):
        self.metrics = dict(metrics)
        self.inputs = inputs
        self.decode = decode
        self.baselines = Baselines()
        for metric in self.metrics.values():
            metric.resolve(inputs)
        needed = sorted({s for m in self.metrics.values() for s in (m.splits or [])})
        unknown = [s for s in needed if inputs.kind(s) is None]
        if unknown:
            raise UserError(f"eval.metrics: unknown split '{unknown[0]}' for benchmark '{benchmark}'; "
                            f"known: {', '.join(inputs.known())}")

    def evaluate(self, stage: str, model, autocast, attack: Optional[PromptView] = None) -> StageResult:
        """Every metric on ``model`` at ``stage``: aggregates, artifacts and per-example rows."""
        scorer = StageScorer(model, self.inputs, self.decode, autocast, stage, self.baselines, attack)
        values: Dict[str, float] = {}
        with overriding(model, attack, bos_ids(self.inputs.tokenizer)):
            scorer.prefetch(self.metrics.values())
            for metric_id, metric in self.metrics.items():
                prefix = "" if metric_id == metric.registry_name else f"{metric_id}/"
                scorer.record_prefix = prefix
                for key, value in metric.compute(scorer).items():
                    values[prefix + key] = float(value)
        scorer.record_prefix = ""
        rows = stage_rows(scorer)
        self.baselines.add(scorer)
        return StageResult(values, scorer.artifacts, rows)
