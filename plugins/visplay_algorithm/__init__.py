"""visplay first-party plugin: algorithm."""
