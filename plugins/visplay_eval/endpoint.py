"""The endpoint judge's HTTP client: OpenAI-compatible chat completions with bounded concurrency and retries.

Each request body is serialised once and the same bytes are sent on every attempt, so a retry can never change the
sampling settings (temperature, top_p, seed, max_tokens). Transient failures are retried with exponential backoff
(``retry_backoff_s * 2**k``, capped at ``retry_backoff_max_s``, at least a 429/503 reply's ``Retry-After``): timeouts,
refused connections, HTTP 408, 429 and 5xx. Other HTTP errors (400, 401, 404, ...) and malformed replies fail at once:
sending the same bytes again would get the same answer. Every call ends in a :class:`CallOutcome` (attempts, status,
HTTP status, latency, the error of each failed attempt), which the judge stores with the verdict.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

RETRIED_HTTP = frozenset({408, 429})  # and every 5xx


@dataclass
class CallOutcome:
    """How one judge request ended: ``reply`` is the message content when ``status == "ok"``."""

    reply: str | None
    status: str  # "ok" or "failed"
    attempts: int
    latency_s: float | None  # wall time of all attempts and waits (None for a local model: not measured)
    http_status: int | None = None  # of the last attempt; None when no HTTP reply came
    errors: list[str] = field(default_factory=list)  # one per failed attempt
    served_model: str | None = None  # the reply's ``model`` field


class _Transient(Exception):
    def __init__(self, message: str, http_status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.http_status, self.retry_after = http_status, retry_after


class _Fatal(Exception):
    def __init__(self, message: str, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


@dataclass
class EndpointClient:
    """POSTs chat-completions bodies to ``url``; ``sleep`` is the wait between attempts (time.sleep)."""

    url: str
    timeout_s: float
    api_key: str | None = None
    max_attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def _once(self, data: bytes) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # noqa: S310 (scheme checked)
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:200]
            message = f"HTTP {exc.code}: {detail}"
            if exc.code in RETRIED_HTTP or exc.code >= 500:
                raise _Transient(message, exc.code, _retry_after(exc.headers.get("Retry-After"))) from exc
            raise _Fatal(message, exc.code) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"unreachable or timed out after {self.timeout_s:g} s ({reason})") from exc
        try:
            return status, json.loads(raw.decode("utf-8"))
        except ValueError as exc:
            raise _Fatal(f"reply is not JSON ({exc})", status) from exc

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))
        return min(self.backoff_max_s, max(delay, retry_after or 0.0))

    def call(self, body: dict[str, Any]) -> CallOutcome:
        """One request with its retries; never raises for a failed request (the outcome says so)."""
        data = json.dumps(body, sort_keys=True).encode("utf-8")  # the same bytes on every attempt
        errors: list[str] = []
        start = time.monotonic()
        http_status = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                http_status, reply = self._once(data)
            except _Transient as exc:
                errors.append(str(exc))
                http_status = exc.http_status
                if attempt < self.max_attempts:
                    self.sleep(self._wait(attempt, exc.retry_after))
                continue
            except _Fatal as exc:
                errors.append(str(exc))
                return CallOutcome(None, "failed", attempt, time.monotonic() - start, exc.http_status, errors)
            try:
                content = str(reply["choices"][0]["message"]["content"])
            except (KeyError, IndexError, TypeError):
                errors.append(f"reply has no choices[0].message.content: {str(reply)[:200]}")
                return CallOutcome(None, "failed", attempt, time.monotonic() - start, http_status, errors)
            served = reply.get("model") if isinstance(reply, dict) else None
            return CallOutcome(content, "ok", attempt, time.monotonic() - start, http_status, errors,
                               str(served) if served is not None else None)
        return CallOutcome(None, "failed", self.max_attempts, time.monotonic() - start, http_status, errors)

    def call_all(self, bodies: Sequence[dict[str, Any]], concurrency: int) -> list[CallOutcome]:
        """Outcomes of ``bodies`` in order, at most ``concurrency`` requests in flight."""
        if not bodies:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(bodies)))) as pool:
            return list(pool.map(self.call, bodies))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (its delta-seconds form; an HTTP date is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
