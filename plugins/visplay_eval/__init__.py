"""visplay first-party plugin: eval."""
