"""visplay first-party plugin: images."""
