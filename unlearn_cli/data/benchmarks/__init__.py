"""Benchmarks: one module per benchmark, registered in ``BENCHMARKS``.

A benchmark's constructor keywords are its YAML settings; ``load()`` returns ``BenchmarkData``.
``builds_target`` says whether the target/oracle models are trained locally by the prepare stage
(embedded benchmarks) or given as checkpoints (real benchmarks). ``cache_key()`` lists every
setting that determines the data.
"""
