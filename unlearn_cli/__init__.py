"""unlearn_cli: config-driven experiments for LLM unlearning."""

__version__ = "0.1.0"
