"""Evaluation metrics: one module per metric, registered in ``METRICS``.

A metric's constructor keywords are its YAML settings (usually ``splits``); ``compute(scorer)``
returns ``{"<split>_<metric>": float}`` using the stage's shared ``StageScorer``. Each class has a
``higher_is_better`` flag (from the point of view of the split's purpose: on forget splits lower
is better for knowledge metrics, which the flag does not encode).
"""
