"""visplay first-party plugin: grpo."""
