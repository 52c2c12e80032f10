"""Metrics sinks: every committed step's metrics go to TensorBoard (default), W&B (offline) or MLflow (local)."""
