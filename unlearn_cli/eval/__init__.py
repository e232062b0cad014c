"""Evaluation core: decoding, batched model operations, prompt views, a run's evaluation inputs, the per-stage
scorer with typed baselines, pure estimators and the lm-evaluation-harness bridge. Metrics sit on top."""
