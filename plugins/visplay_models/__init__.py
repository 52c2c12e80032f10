"""visplay first-party plugin: models."""
