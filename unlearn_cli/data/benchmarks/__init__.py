"""Benchmarks: one module per benchmark, registered in ``BENCHMARKS`` (contract: ``contracts.Benchmark``).

A benchmark's constructor keywords are its YAML settings; ``load()`` returns ``BenchmarkData``;
``cache_key()`` lists every setting that determines the data. With ``model=tiny`` the prepare stage
trains a target on the loaded ``forget`` + ``retain`` training splits and an oracle on ``retain``, so
any benchmark that provides both can run the whole protocol locally.
"""
