"""The three judges of ``visplay eval``: ``rule`` (default), ``local`` (a model folder) and ``endpoint``.

Model judges see a fixed prompt (:data:`JUDGE_SYSTEM`, :data:`JUDGE_TEMPLATE`) and answer yes or no. They are
asked greedily (temperature 0), and their prompt and raw verdict text are returned so the caller logs them: a score
can be audited and re-judged later with another judge. The paper judged with GLM-4-Flash at temperature 0.6, so its
numbers are not reproducible; ours are, for the rule and local judges.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from visplay.api import Prompt, RunContext, SamplingParams, plugin_section, scoring

JUDGE_SYSTEM = "You are a strict grader of answers to benchmark questions."
JUDGE_TEMPLATE = (
    "Question: {question}\n"
    "Reference answer: {answer}\n"
    "Model answer: {response}\n"
    "Does the model answer mean the same as the reference answer? Reply with one word: yes or no."
)
RESPONSE_CHARS = 1000  # the judge sees the boxed answer, or the end of an unboxed response


class JudgeError(Exception):
    """A judge is misconfigured or its model/endpoint failed; the message names the setting or the URL."""


def answer_key_fn(ctx: RunContext) -> Callable[[str], str | None]:
    """Canonical answer keys through the ``visplay_answer_key`` hook, falling back to scoring.fallback_key."""

    def key(answer: str) -> str | None:
        got = ctx.hooks.answer_key(answer)
        return got if got is not None else scoring.fallback_key(answer)

    return key


def protocols_of(ctx: RunContext, items: Sequence[dict[str, Any]]) -> list[Any]:
    """The protocol of each item (its ``protocol`` name, ``visplay`` when absent), one instance per name."""
    made: dict[str, Any] = {}
    out = []
    for item in items:
        name = item.get("protocol") or "visplay"
        if name not in made:
            made[name] = ctx.hooks.eval_protocol(name)
            if made[name] is None:
                raise JudgeError(f"no plugin provides the evaluation protocol {name!r} (eval.protocol)")
        out.append(made[name])
    return out


def rule_judge(ctx: RunContext, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rule verdicts of each item's protocol (``visplay``: visplay/eval/scoring.py)."""
    return [{**protocol.score(item), "prompt": None, "verdict": None}
            for protocol, item in zip(protocols_of(ctx, items), items)]


def judge_prompt(item: dict[str, Any]) -> str:
    """The ``visplay`` protocol's judge prompt for one item."""
    response = item.get("response") or ""
    shown = scoring.extract_boxed(response)
    if shown is None:
        shown = response.strip()[-RESPONSE_CHARS:]
    return JUDGE_TEMPLATE.format(question=item["question"], answer=item["answer"], response=shown or "(empty)")


def parse_verdict(text: str | None) -> bool | None:
    """True/False from a judge's reply (yes/correct/true/1, no/incorrect/false/0); None when unclear."""
    m = re.match(r"\W*(yes|correct|true|1|no|incorrect|false|wrong|0)\b", (text or "").strip().lower())
    if not m:
        return None
    return m.group(1) in ("yes", "correct", "true", "1")


Request = tuple[dict[str, Any], str | None, str]
"""(item, system text or None, user text): one question to a model judge."""


def judge_with(ctx: RunContext, items: Sequence[dict[str, Any]],
               ask: Callable[[list[Request]], list[str]]) -> list[dict[str, Any]]:
    """Verdicts of a model judge: each item's protocol writes the request and reads the reply; items the protocol
    scores without a judge (e.g. the released code's empty answers) keep the rule verdict. ``ask`` sends the
    requests and returns the replies, in order."""
    protocols = protocols_of(ctx, items)
    requests = [protocol.judge_request(item) for protocol, item in zip(protocols, items)]
    asked = [i for i, request in enumerate(requests) if request is not None]
    replies = dict(zip(asked, ask([(items[i], *requests[i]) for i in asked]))) if asked else {}
    out = []
    for i, (protocol, item) in enumerate(zip(protocols, items)):
        if requests[i] is None:
            out.append({**protocol.score(item), "prompt": None, "verdict": None})
            continue
        system, user = requests[i]
        shown = f"[system] {system}\n[user] {user}" if system is not None else f"[user] {user}"
        out.append({**protocol.parse_judge_reply(item, replies[i]), "prompt": shown, "verdict": replies[i]})
    return out


# --- local model ---------------------------------------------------------------------------------------------

_LOCAL_SAMPLERS: dict[tuple[str, str, str], Any] = {}  # loading a judge model once per process, not per batch


def _local_sampler(ctx: RunContext, model_dir: str) -> Any:
    sampler_name = plugin_section(ctx.recipe, "eval").judge_sampler
    cache_key = (str(model_dir), sampler_name, ctx.recipe.model.dtype)
    if cache_key not in _LOCAL_SAMPLERS:
        overrides = ["model.backend=hf", f"model.path={model_dir}", f"sampler.reasoner={sampler_name}"]
        if "models" in ctx.recipe.plugins:
            overrides.append("plugins.models.lora.enabled=false")
        jctx = ctx.with_overrides(overrides, log=None, phase="eval")
        policy = jctx.hooks.load_policy("reasoner", None)
        sampler = jctx.hooks.make_sampler("reasoner", policy)
        _LOCAL_SAMPLERS[cache_key] = sampler
    return _LOCAL_SAMPLERS[cache_key]


def local_judge(ctx: RunContext, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts from a local model folder (``plugins.eval.judge_model``), greedy, through a sampler plugin."""
    options = plugin_section(ctx.recipe, "eval")
    model_dir = options.judge_model
    if not model_dir:
        raise JudgeError("judge 'local' needs plugins.eval.judge_model (a local model folder)")
    if not os.path.isdir(model_dir):
        raise JudgeError(f"plugins.eval.judge_model={model_dir}: not a folder")
    sampler = _local_sampler(ctx, model_dir)
    max_tokens = options.judge_max_new_tokens

    def ask(requests: list[Request]) -> list[str]:
        params = [SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_tokens,
                                 seed=ctx.seed_for("eval", "judge", item.get("key", str(i))))
                  for i, (item, _, _) in enumerate(requests)]
        generations = sampler.sample([Prompt(user=user, system=system) for _, system, user in requests], params)
        return [g[0].text for g in generations]

    return judge_with(ctx, items, ask)


# --- OpenAI-compatible endpoint ------------------------------------------------------------------------------


def endpoint_url(base: str) -> str:
    """``.../chat/completions`` for a base URL such as ``http://127.0.0.1:8000/v1``."""
    if not re.match(r"https?://", base):
        raise JudgeError(f"plugins.eval.judge_url={base!r}: must start with http:// or https://")
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def _post(url: str, body: dict[str, Any], *, timeout: float, api_key: str | None) -> str:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 (scheme checked above)
            data = json.loads(reply.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:200]
        raise JudgeError(f"judge endpoint {url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise JudgeError(f"judge endpoint {url}: unreachable or timed out after {timeout:g} s ({reason})") from exc
    except ValueError as exc:
        raise JudgeError(f"judge endpoint {url}: reply is not JSON ({exc})") from exc
    try:
        return str(data["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError) as exc:
        raise JudgeError(f"judge endpoint {url}: reply has no choices[0].message.content: {str(data)[:200]}") from exc


def endpoint_judge(ctx: RunContext, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts from an OpenAI-compatible chat-completions endpoint (``plugins.eval.judge_url``), temperature 0;
    the request settings are the rest of ``plugins.eval`` (options.py)."""
    options = plugin_section(ctx.recipe, "eval")
    base = options.judge_url
    if not base:
        raise JudgeError("judge 'endpoint' needs plugins.eval.judge_url (e.g. http://127.0.0.1:8000/v1); nothing "
                         "contacted")
    url = endpoint_url(str(base))
    timeout = float(options.timeout_s)
    key_env = options.api_key_env
    api_key = os.environ.get(str(key_env)) if key_env else None
    if key_env and not api_key:
        raise JudgeError(f"plugins.eval.api_key_env={key_env}: environment variable is not set")

    def ask(requests: list[Request]) -> list[str]:
        replies = []
        for _, system, user in requests:
            messages = [{"role": "system", "content": system}] if system is not None else []
            messages.append({"role": "user", "content": user})
            body = {"model": options.judge_model_name, "temperature": 0.0,
                    "max_tokens": options.judge_max_new_tokens, "messages": messages}
            replies.append(_post(url, body, timeout=timeout, api_key=api_key))
        return replies

    return judge_with(ctx, items, ask)


JUDGES = {"rule": rule_judge, "local": local_judge, "endpoint": endpoint_judge}
