"""visplay first-party plugin: games."""
