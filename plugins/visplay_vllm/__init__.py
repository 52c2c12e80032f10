"""visplay first-party plugin: vllm."""
