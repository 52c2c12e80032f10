"""visplay first-party plugin: replay."""
