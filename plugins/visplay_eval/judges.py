"""The three judges of ``visplay eval``: ``rule`` (default), ``local`` (a model folder) and ``endpoint``.

Model judges see a fixed prompt (:data:`JUDGE_SYSTEM`, :data:`JUDGE_TEMPLATE`) and answer yes or no. They are
asked greedily (temperature 0), and their prompt and raw verdict text are returned so the caller logs them: a score
can be audited and re-judged later with another judge. Every model verdict is also kept in the run log keyed by
(judge identity, exact prompt) (verdicts.py): re-judging the same responses asks nothing and gives the same
verdicts. The paper judged with GLM-4-Flash at temperature 0.6, so its numbers are not reproducible; ours are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from visplay.api import Prompt, RunContext, SamplingParams, plugin_section, scoring
from visplay_eval.endpoint import CallOutcome, EndpointClient
from visplay_eval.verdicts import TABLE, VerdictCache, folder_digest, sha256, shown_prompt

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


Request = tuple[str | None, str]
"""(system text or None, user text): one question to a model judge."""


def judge_with(ctx: RunContext, items: Sequence[dict[str, Any]], identity: dict[str, Any], who: str,
               ask: Callable[[list[Request]], list[CallOutcome]]) -> list[dict[str, Any]]:
    """Verdicts of a model judge: each item's protocol writes the request and reads the reply; items the protocol
    scores without a judge (e.g. the released code's empty answers) keep the rule verdict. Replies on file for
    (``identity``, prompt) in the run log are reused (verdicts.py); ``ask`` sends the others, each distinct prompt
    once, and returns their outcomes in order, which are stored before a failed one raises (``who`` names it)."""
    protocols = protocols_of(ctx, items)
    requests = [protocol.judge_request(item) for protocol, item in zip(protocols, items)]
    shown = [shown_prompt(*r) if r is not None else None for r in requests]
    cache = VerdictCache(ctx.log, identity)
    wanted = list(dict.fromkeys(s for s in shown if s is not None))
    replies = cache.lookup(wanted)
    missing = [s for s in wanted if s not in replies]
    if missing:
        request_of = {s: r for s, r in zip(shown, requests) if s is not None}  # equal texts, equal requests
        outcomes = ask([request_of[s] for s in missing])
        cache.store(missing, outcomes)
        failed = [(s, o) for s, o in zip(missing, outcomes) if o.status != "ok"]
        if failed:
            o = failed[0][1]
            raise JudgeError(f"{who}: {o.errors[-1] if o.errors else o.status} ({o.attempts} attempt(s); "
                             f"{len(failed)} of {len(missing)} request(s) failed, outcomes in {TABLE})")
        replies.update({s: o.reply for s, o in zip(missing, outcomes)})
    out = []
    for protocol, item, text in zip(protocols, items, shown):
        if text is None:
            out.append({**protocol.score(item), "prompt": None, "verdict": None})
            continue
        reply = replies[text]
        out.append({**protocol.parse_judge_reply(item, reply), "prompt": text, "verdict": reply,
                    "judge_id": cache.judge_id})
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


def local_identity(ctx: RunContext, model_dir: str) -> dict[str, Any]:
    """What decides a local judge's reply: the folder and its files' hash, sampler, dtype, greedy, length."""
    options = plugin_section(ctx.recipe, "eval")
    return {"judge": "local", "model": str(Path(model_dir).resolve()), "sha256": folder_digest(model_dir),
            "sampler": options.judge_sampler, "dtype": str(ctx.recipe.model.dtype), "temperature": 0.0,
            "top_p": 1.0, "max_new_tokens": options.judge_max_new_tokens, "seed": "sha256(prompt)"}


def local_judge(ctx: RunContext, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts from a local model folder (``plugins.eval.judge_model``), greedy, through a sampler plugin; the
    model is loaded only when a prompt has no verdict on file."""
    options = plugin_section(ctx.recipe, "eval")
    model_dir = options.judge_model
    if not model_dir:
        raise JudgeError("judge 'local' needs plugins.eval.judge_model (a local model folder)")
    if not os.path.isdir(model_dir):
        raise JudgeError(f"plugins.eval.judge_model={model_dir}: not a folder")
    max_tokens = options.judge_max_new_tokens

    def ask(requests: list[Request]) -> list[CallOutcome]:
        sampler = _local_sampler(ctx, model_dir)
        # the seed follows the prompt alone (greedy makes it moot), so one (identity, prompt) is one request
        params = [SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=max_tokens,
                                 seed=int(sha256(shown_prompt(system, user))[:8], 16))
                  for system, user in requests]
        generations = sampler.sample([Prompt(user=user, system=system) for system, user in requests], params)
        return [CallOutcome(g[0].text, "ok", 1, None) for g in generations]

    return judge_with(ctx, items, local_identity(ctx, model_dir), f"judge local {model_dir}", ask)


# --- OpenAI-compatible endpoint ------------------------------------------------------------------------------


def endpoint_url(base: str) -> str:
    """``.../chat/completions`` for a base URL such as ``http://127.0.0.1:8000/v1``."""
    if not re.match(r"https?://", base):
        raise JudgeError(f"plugins.eval.judge_url={base!r}: must start with http:// or https://")
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def sampling_body(options: Any) -> dict[str, Any]:
    """The sampling settings every request sends, unchanged by retries (``seed`` left out when None)."""
    body = {"model": options.judge_model_name, "temperature": float(options.judge_temperature),
            "top_p": float(options.judge_top_p), "max_tokens": int(options.judge_max_new_tokens)}
    if options.judge_seed is not None:
        body["seed"] = int(options.judge_seed)
    return body


def endpoint_judge(ctx: RunContext, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts from an OpenAI-compatible chat-completions endpoint (``plugins.eval.judge_url``), greedy by
    default; concurrency, retries and sampling settings are the rest of ``plugins.eval`` (options.py)."""
    options = plugin_section(ctx.recipe, "eval")
    base = options.judge_url
    if not base:
        raise JudgeError("judge 'endpoint' needs plugins.eval.judge_url (e.g. http://127.0.0.1:8000/v1); nothing "
                         "contacted")
    url = endpoint_url(str(base))
    key_env = options.api_key_env
    api_key = os.environ.get(str(key_env)) if key_env else None
    if key_env and not api_key:
        raise JudgeError(f"plugins.eval.api_key_env={key_env}: environment variable is not set")
    client = EndpointClient(url, float(options.timeout_s), api_key, max_attempts=int(options.max_attempts),
                            backoff_s=float(options.retry_backoff_s),
                            backoff_max_s=float(options.retry_backoff_max_s))
    settings = sampling_body(options)

    def ask(requests: list[Request]) -> list[CallOutcome]:
        bodies = []
        for system, user in requests:
            messages = [{"role": "system", "content": system}] if system is not None else []
            messages.append({"role": "user", "content": user})
            bodies.append({**settings, "messages": messages})
        return client.call_all(bodies, int(options.concurrency))

    identity = {"judge": "endpoint", "url": url, **settings}  # the token is left out: it does not decide replies
    return judge_with(ctx, items, identity, f"judge endpoint {url}", ask)


JUDGES = {"rule": rule_judge, "local": local_judge, "endpoint": endpoint_judge}
