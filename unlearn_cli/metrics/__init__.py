"""Evaluation metrics: one module per metric, registered in ``METRICS`` (contract: ``contracts.Metric``).

A metric's constructor keywords are its YAML settings (usually ``splits``); ``compute(scorer)``
returns ``{"<split>_<metric>": float}`` using the stage's shared ``eval.scorer.StageScorer``; a metric
that compares with another stage names it in ``baseline`` and reads it through
``scorer.baseline(name)``. Each class has a ``higher_is_better`` flag (from the point of view of the
split's purpose: on forget splits lower is better for knowledge metrics, which the flag does not
encode). Metrics are instances keyed by id (``eval.metrics.<id>``, ``name`` defaulting to the id);
an instance whose id is not its name prefixes its keys with ``<id>/``.
"""
