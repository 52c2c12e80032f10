"""The eval plugin's recipe section, ``plugins.eval``: settings of the model judges (``eval.judge``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalOptions:
    """Judges of ``visplay eval``: ``local`` (a model folder) and ``endpoint`` (an OpenAI-compatible URL)."""

    judge_model: str | None = None
    """Model folder for the ``local`` judge."""
    judge_sampler: str = "hf"
    """Sampler the ``local`` judge generates with (a sampler plugin's name)."""
    judge_url: str | None = None
    """Base URL for the ``endpoint`` judge (e.g. http://127.0.0.1:8000/v1); nothing is contacted unless set."""
    judge_model_name: str = "judge"
    """The ``model`` field of the endpoint judge's requests."""
    judge_max_new_tokens: int = 8
    """Verdict length of the model judges."""
    judge_temperature: float = 0.0
    """The endpoint judge's ``temperature`` (the released evaluation used 0.6); every retry sends it unchanged."""
    judge_top_p: float = 1.0
    """The endpoint judge's ``top_p``; every retry sends it unchanged."""
    judge_seed: int | None = 0
    """The endpoint judge's ``seed`` field (None: not sent); every retry sends it unchanged."""
    timeout_s: float = 30.0
    """Seconds the endpoint judge waits for a reply (one attempt)."""
    concurrency: int = 4
    """Requests the endpoint judge keeps in flight at once."""
    max_attempts: int = 5
    """Attempts per endpoint request; timeouts, refused connections, HTTP 408, 429 and 5xx are retried."""
    retry_backoff_s: float = 1.0
    """Wait before the second attempt; doubled after each failed attempt (at least a reply's Retry-After)."""
    retry_backoff_max_s: float = 30.0
    """Longest wait between two attempts."""
    api_key_env: str | None = None
    """Name of an environment variable holding the endpoint's bearer token; None: no token."""

    legacy_keys = {"eval.judge_model": "judge_model", "eval.judge_url": "judge_url"}
    path_keys = ("judge_model",)

    def validate(self) -> dict[str, str]:
        problems = {}
        if self.judge_max_new_tokens < 1:
            problems["judge_max_new_tokens"] = f"must be >= 1, got {self.judge_max_new_tokens}"
        if not self.timeout_s > 0:
            problems["timeout_s"] = f"must be > 0, got {self.timeout_s}"
        for name in ("concurrency", "max_attempts"):
            if getattr(self, name) < 1:
                problems[name] = f"must be >= 1, got {getattr(self, name)}"
        for name in ("retry_backoff_s", "retry_backoff_max_s", "judge_temperature"):
            if getattr(self, name) < 0:
                problems[name] = f"must be >= 0, got {getattr(self, name)}"
        if not 0 < self.judge_top_p <= 1:
            problems["judge_top_p"] = f"must be in (0, 1], got {self.judge_top_p}"
        return problems
