"""Loggers: where per-step training logs and summary metrics go (one module each, ``LOGGERS``;
contract: ``contracts.Logger``).

Every logger takes its YAML settings as constructor keywords and, at ``start(run_dir, run_name,
config)``, the run's context. A logger must never stop a run: failures are reported once as a
warning and the logger disables itself.
"""
