"""Typed calls of the hooks, with results checked where they cross from a plugin into the core.

The engine never calls a hook by its name as a string: it calls ``ctx.hooks.generate_questions(...)`` and the like,
so a reader (or an IDE) can follow the data across the hook points, and every result is checked at the boundary —
types, lengths, finiteness, reserved names — with an error that names the plugin and the hook that produced the
value, never the next step downstream.

Implementations are called one by one, in pluggy's call order (``tryfirst`` first, then last-registered first;
:func:`call_each`). That is how a result and an exception always carry their plugin: gathering hooks (reward
components, filter decisions) return ``(plugin, result)`` pairs, and *firstresult* hooks stop at the first plugin
that returns something. Hook wrappers are therefore not supported on visplay's hooks (get_plugin_manager refuses
them); VISPLAY_TRACE_HOOKS=1 logs every call here instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any

import pluggy

from visplay.config import RecipeError
from visplay.plugins import PluginError, env_flag
from visplay.types import (
    AskedQuestion,
    EngineNeeds,
    FilterDecision,
    Footprint,
    Generation,
    ImageRecord,
    ImageSource,
    ModelFacts,
    Optimizer,
    ParsedQuestion,
    Policy,
    Sampler,
    Vote,
)

if TYPE_CHECKING:  # pragma: no cover
    from visplay.context import RunContext
    from visplay.types import AnswerItem, QuestionItem

trace_log = logging.getLogger("visplay.hooks")


def trace_level() -> int | None:
    """The level hook calls are traced at: WARNING (always shown) under ``VISPLAY_TRACE_HOOKS`` (on by the one
    rule of visplay.plugins.env_flag), DEBUG when that logger shows debug (``-vv``), else None (not traced)."""
    if env_flag("VISPLAY_TRACE_HOOKS"):
        return logging.WARNING
    return logging.DEBUG if trace_log.isEnabledFor(logging.DEBUG) else None

RESERVED_COMPONENTS = frozenset({"total"})
"""Reward component names the core writes itself (``rewards.component = 'total'`` is the combined reward)."""


def call_each(pm: pluggy.PluginManager, name: str, kwargs: dict[str, Any], *,
              first: bool = False) -> list[tuple[str, Any]]:
    """Call every implementation of hook ``name`` in pluggy's order; return ``(plugin, result)`` for the non-None
    results (only the first one when ``first``). An exception becomes a PluginError naming plugin and hook."""
    out: list[tuple[str, Any]] = []
    level = trace_level()
    for impl in reversed(getattr(pm.hook, name).get_hookimpls()):
        try:
            result = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        except (PluginError, RecipeError):  # already names what is wrong (a recipe key, a plugin)
            raise
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in hook {name}: {type(exc).__name__}: {exc}") \
                from exc
        if level is not None:
            trace_log.log(level, "%s <- %s: %s", name, impl.plugin_name, _short(result))
        if result is not None:
            out.append((impl.plugin_name, result))
            if first:
                break
    return out


class NoAnswerError(PluginError):
    """No plugin answered a hook that needs an answer (a firstresult hook where every plugin returned None)."""


class HookResultError(PluginError):
    """A plugin returned a value that breaks its hook's contract; the message names plugin, hook and value."""


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _fail(plugin: str, hook: str, problem: str) -> HookResultError:
    return HookResultError(f"plugin {plugin!r} returned a bad result from hook {hook}: {problem}")


def _finite(plugin: str, hook: str, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise _fail(plugin, hook, f"{what} must be a number, got {type(value).__name__} {_short(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise _fail(plugin, hook, f"{what} is {number} (rewards, metrics and losses must be finite)")
    return number


def _field(plugin: str, hook: str, label: str, value: Any) -> float | tuple[float, float] | str:
    """A summary field: a finite number, a (value, standard error) pair of finite numbers, or text."""
    if isinstance(value, tuple) and len(value) == 2:
        return (_finite(plugin, hook, f"field {label!r}", value[0]),
                _finite(plugin, hook, f"field {label!r} (standard error)", value[1]))
    if isinstance(value, Real) and not isinstance(value, bool):
        return _finite(plugin, hook, f"field {label!r}", value)
    return str(value)


def _numbers(plugin: str, hook: str, what: str, values: Any, n: int) -> list[float]:
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
        raise _fail(plugin, hook, f"{what} must be a list of {n} numbers, got {type(values).__name__}")
    values = list(values)  # a lazy iterable is read once, here
    if len(values) != n:
        raise _fail(plugin, hook, f"{what} has {len(values)} values for {n} items")
    return [_finite(plugin, hook, f"{what}[{k}]", v) for k, v in enumerate(values)]


def _metrics(plugin: str, hook: str, result: Any) -> dict[str, float]:
    if not isinstance(result, dict):
        raise _fail(plugin, hook, f"metrics must be a dict {{name: number}}, got {type(result).__name__}")
    return {str(k): _finite(plugin, hook, f"metric {k!r}", v) for k, v in result.items()}


def _groups(plugin: str, hook: str, result: Any, outer: int, inner: int) -> list[list[Generation]]:
    if not isinstance(result, Sequence) or len(result) != outer:
        size = len(result) if isinstance(result, Sequence) else type(result).__name__
        raise _fail(plugin, hook, f"expected {outer} groups of {inner} generations, got {size}")
    for group in result:
        if not isinstance(group, Sequence) or len(group) != inner:
            shape = [len(g) if isinstance(g, Sequence) else type(g).__name__ for g in result]
            raise _fail(plugin, hook, f"returned groups of sizes {shape}; expected {outer} groups of {inner}")
        for gen in group:
            if not isinstance(gen, Generation):
                raise _fail(plugin, hook, f"a group holds a {type(gen).__name__}, not a Generation")
            if gen.logprobs and len(gen.logprobs) != len(gen.token_ids):  # empty: not recorded (e.g. a logged vote)
                raise _fail(plugin, hook, f"a generation has {len(gen.token_ids)} token ids but "
                                          f"{len(gen.logprobs)} log-probs")
    return [list(group) for group in result]


class Hooks:
    """The hooks of one run, called with its context. Every method documents its hookspec in visplay/hookspecs.py."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    def _each(self, hook: str, /, first: bool = False, **kwargs: Any) -> list[tuple[str, Any]]:
        return call_each(self.ctx.pm, hook, {"ctx": self.ctx, **kwargs}, first=first)

    def _first(self, hook: str, /, **kwargs: Any) -> tuple[str, Any] | tuple[None, None]:
        found = self._each(hook, first=True, **kwargs)
        return found[0] if found else (None, None)

    # --- 1. question generation and 2. answer sampling --------------------------------------------------------

    def generate_questions(self, sampler: Sampler, images: Sequence[ImageRecord], n: int,
                           seeds: Sequence[int]) -> list[list[Generation]]:
        hook = "visplay_generate_questions"
        plugin, result = self._first(hook, sampler=sampler, images=images, n=n, seeds=seeds)
        if plugin is None:
            raise NoAnswerError(f"no plugin answered {hook} (see `visplay plugins`)")
        return _groups(plugin, hook, result, len(images), n)

    def sample_answers(self, sampler: Sampler, questions: Sequence[AskedQuestion], n: int,
                       seeds: Sequence[int], purpose: str) -> list[list[Generation]]:
        hook = "visplay_sample_answers"
        if not all(isinstance(q, AskedQuestion) for q in questions):
            raise TypeError(f"{hook}: questions must be AskedQuestion (image, text, qtype)")
        plugin, result = self._first(hook, sampler=sampler, questions=questions, n=n, seeds=seeds, purpose=purpose)
        if plugin is None:
            raise NoAnswerError(f"no plugin answered {hook} (see `visplay plugins`)")
        return _groups(plugin, hook, result, len(questions), n)

    # --- 3. reward --------------------------------------------------------------------------------------------

    def reward_components(self, role: str, items: Sequence[QuestionItem] | Sequence[AnswerItem]
                          ) -> dict[str, tuple[str, list[float]]]:
        """{component: (producing plugin, one finite float per item)}; a name given twice is an error naming
        both plugins."""
        hook = "visplay_reward_components"
        components: dict[str, tuple[str, list[float]]] = {}
        for plugin, result in self._each(hook, role=role, items=items):
            if not isinstance(result, dict):
                raise _fail(plugin, hook, f"expected {{component: values}}, got {type(result).__name__}")
            for name, values in result.items():
                if not isinstance(name, str) or not name or name in RESERVED_COMPONENTS:
                    raise _fail(plugin, hook, f"component name {name!r} is reserved or not a non-empty string")
                if name in components:
                    raise PluginError(f"reward component {name!r} is returned by two plugins: "
                                      f"{components[name][0]}, {plugin}")
                components[name] = (plugin, _numbers(plugin, hook, f"component {name!r}", values, len(items)))
        return components

    def combine_rewards(self, role: str, components: dict[str, list[float]],
                        items: Sequence[QuestionItem] | Sequence[AnswerItem]) -> tuple[str, list[float]]:
        """(combining plugin, one finite total per item)."""
        hook = "visplay_combine_rewards"
        plugin, totals = self._first(hook, role=role, components=components, items=items)
        if plugin is None:
            raise NoAnswerError(f"{hook}: no plugin combined the {role} rewards (components: {sorted(components)})")
        return plugin, _numbers(plugin, hook, "combined rewards", totals, len(items))

    # --- 4. filtering -----------------------------------------------------------------------------------------

    def filter_questions(self, items: Sequence[QuestionItem]) -> list[tuple[str, list[FilterDecision]]]:
        """(plugin, one decision per item) for every plugin that did not abstain."""
        hook = "visplay_filter_questions"
        out = []
        for plugin, decisions in self._each(hook, items=items):
            decisions = list(decisions) if isinstance(decisions, Iterable) else decisions
            if not isinstance(decisions, list) or len(decisions) != len(items):
                raise _fail(plugin, hook, f"expected {len(items)} decisions, got {_short(decisions)}")
            if not all(isinstance(d, FilterDecision) for d in decisions):
                raise _fail(plugin, hook, "every decision must be a FilterDecision")
            out.append((plugin, decisions))
        return out

    # --- 5. optimizer -----------------------------------------------------------------------------------------

    def make_optimizer(self, role: str, policy: Policy) -> Optimizer:
        hook = "visplay_make_optimizer"
        plugin, optimizer = self._first(hook, role=role, policy=policy)
        if plugin is None:
            raise NoAnswerError(f"no plugin makes optimizer.name={self.ctx.recipe.optimizer.name!r} (hook {hook})")
        if not isinstance(optimizer, Optimizer):
            raise _fail(plugin, hook, f"{type(optimizer).__name__} lacks update/save/load (visplay.types.Optimizer)")
        return optimizer

    # --- parsing and answers ----------------------------------------------------------------------------------

    def parse_question(self, text: str) -> ParsedQuestion:
        hook = "visplay_parse_question"
        plugin, parsed = self._first(hook, text=text)
        if plugin is None:
            return ParsedQuestion(valid=False, reason="no plugin parses questions")
        if not isinstance(parsed, ParsedQuestion):
            raise _fail(plugin, hook, f"expected a ParsedQuestion, got {type(parsed).__name__}")
        return parsed

    def extract_answers(self, texts: Sequence[str]) -> list[str | None]:
        hook = "visplay_extract_answers"
        plugin, answers = self._first(hook, texts=texts)
        if plugin is None:
            raise NoAnswerError(f"no plugin answered {hook} (see `visplay plugins`)")
        answers = list(answers) if isinstance(answers, Iterable) and not isinstance(answers, str) else answers
        if not isinstance(answers, list) or len(answers) != len(texts):
            raise _fail(plugin, hook, f"expected {len(texts)} answers, got {_short(answers)}")
        if not all(a is None or isinstance(a, str) for a in answers):
            raise _fail(plugin, hook, "answers must be strings or None")
        return answers

    def answer_key(self, answer: str) -> str | None:
        """The canonical vote key of an answer; None when no plugin has a key for it."""
        hook = "visplay_answer_key"
        plugin, key = self._first(hook, answer=answer)
        if plugin is not None and not isinstance(key, str):
            raise _fail(plugin, hook, f"a key must be a string, got {type(key).__name__}")
        return key

    def vote(self, answers: Sequence[str | None], keys: Sequence[str | None]) -> Vote | None:
        """A plugin's count of one question's answers (``visplay_vote``), or None for the core's majority vote."""
        hook = "visplay_vote"
        plugin, vote = self._first(hook, answers=answers, keys=keys)
        if plugin is None:
            return None
        if not isinstance(vote, Vote) or len(vote.answers) != len(answers) or len(vote.keys) != len(keys):
            raise _fail(plugin, hook, f"expected a Vote over the {len(answers)} answers, got {_short(vote)}")
        _finite(plugin, hook, "confidence", vote.confidence)
        return vote

    # --- data and models --------------------------------------------------------------------------------------

    def image_source(self, name: str, options: dict[str, Any]) -> ImageSource:
        hook = "visplay_image_source"
        plugin, pool = self._first(hook, name=name, options=options)
        if plugin is None:
            raise NoAnswerError(f"no plugin provides data.source={name!r} (hook {hook}; see `visplay plugins`)")
        if not isinstance(pool, ImageSource):
            raise _fail(plugin, hook, f"{type(pool).__name__} is not an ImageSource (len, iter, getitem)")
        return pool

    def reasoner_questions(self, iteration: int, images: Sequence[ImageRecord]
                           ) -> tuple[str, list[tuple[ImageRecord, str, str]]] | None:
        """(plugin, gold triples) when a plugin supplies the reasoner's set, else None."""
        hook = "visplay_reasoner_questions"
        plugin, triples = self._first(hook, iteration=iteration, images=images)
        if plugin is None:
            return None
        triples = list(triples)
        for triple in triples:
            if not (isinstance(triple, tuple) and len(triple) == 3 and isinstance(triple[0], ImageRecord)
                    and isinstance(triple[1], str) and isinstance(triple[2], str)):
                raise _fail(plugin, hook, f"expected (ImageRecord, question, answer) triples, got {_short(triple)}")
        return plugin, triples

    def question_kinds(self, questions: Sequence[tuple[str, str]]) -> list[str | None]:
        """One kind (or None: unnamed) per (image id, question) pair (``visplay_question_kinds``)."""
        hook = "visplay_question_kinds"
        questions = list(questions)
        plugin, kinds = self._first(hook, questions=questions)
        if plugin is None:
            return [None] * len(questions)
        kinds = list(kinds)
        if len(kinds) != len(questions) or not all(k is None or isinstance(k, str) for k in kinds):
            raise _fail(plugin, hook, f"expected {len(questions)} kinds (strings or None), got {_short(kinds)}")
        return kinds

    def load_policy(self, role: str, init_from: str | None) -> Policy:
        hook = "visplay_load_policy"
        plugin, policy = self._first(hook, role=role, init_from=init_from)
        if plugin is None:
            raise NoAnswerError(f"no plugin loads model.backend={self.ctx.recipe.model.backend!r} "
                              f"(hook {hook}; see `visplay plugins`)")
        if not isinstance(policy, Policy):
            raise _fail(plugin, hook, f"{type(policy).__name__} is not a Policy (role, sampler(), save())")
        return policy

    def make_sampler(self, role: str, policy: Policy) -> Sampler:
        """The sampler named by ``recipe.sampler.<role>``; a plugin must provide it."""
        hook = "visplay_make_sampler"
        plugin, sampler = self._first(hook, role=role, policy=policy)
        if plugin is None:
            name = self.ctx.recipe.sampler.get(role)
            raise NoAnswerError(f"no plugin provides sampler.{role}={name!r} (hook {hook}; see `visplay plugins`)")
        if not isinstance(sampler, Sampler):
            raise _fail(plugin, hook, f"{type(sampler).__name__} has no sample(prompts, params)")
        return sampler

    # --- run lifecycle, evaluation, logging -------------------------------------------------------------------

    def run_start(self, questioner: Policy, reasoner: Policy) -> dict[str, float]:
        return self._merged("visplay_run_start", questioner=questioner, reasoner=reasoner)

    def iteration_end(self, iteration: int, questioner: Policy, reasoner: Policy) -> dict[str, float]:
        return self._merged("visplay_iteration_end", iteration=iteration, questioner=questioner, reasoner=reasoner)

    def summary_fields(self, iteration: int) -> dict[str, float | tuple[float, float] | str]:
        """{label: value} for an iteration's console line and report, from every plugin, in call order."""
        hook = "visplay_summary_fields"
        fields: dict[str, float | tuple[float, float] | str] = {}
        for plugin, result in self._each(hook, iteration=iteration):
            if not isinstance(result, dict):
                raise _fail(plugin, hook, f"expected {{label: value}}, got {_short(result)}")
            for label, value in result.items():
                fields[str(label)] = _field(plugin, hook, str(label), value)
        return fields

    def judge(self, name: str, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
        hook = "visplay_judge"
        plugin, verdicts = self._first(hook, name=name, items=items)
        if plugin is not None and (not isinstance(verdicts, list) or len(verdicts) != len(items)):
            raise _fail(plugin, hook, f"expected {len(items)} verdicts, got {_short(verdicts)}")
        return verdicts

    def eval_protocol(self, name: str) -> Any:
        hook = "visplay_eval_protocol"
        plugin, protocol = self._first(hook, name=name)
        if plugin is not None and not callable(getattr(protocol, "score", None)):
            raise _fail(plugin, hook, f"expected an EvalProtocol, got {_short(protocol)}")
        return protocol

    def log_metrics(self, iteration: int, phase: str, step: int, metrics: dict[str, float],
                    timing: dict[str, float] | None = None) -> None:
        self._each("visplay_log_metrics", iteration=iteration, phase=phase, step=step, metrics=metrics,
                   timing=dict(timing or {}))

    def _merged(self, hook: str, **kwargs: Any) -> dict[str, float]:
        merged: dict[str, float] = {}
        for plugin, result in self._each(hook, **kwargs):
            merged.update(_metrics(plugin, hook, result))
        return merged

    # --- planning -----------------------------------------------------------------------------------------

    def model_facts(self) -> ModelFacts:
        hook = "visplay_model_facts"
        plugin, facts = self._first(hook)
        if plugin is None:
            raise NoAnswerError(f"no plugin describes model.backend={self.ctx.recipe.model.backend!r} for planning "
                                f"(hook {hook})")
        if not isinstance(facts, ModelFacts):
            raise _fail(plugin, hook, f"expected ModelFacts, got {type(facts).__name__}")
        return facts

    def engine_needs(self, role: str) -> EngineNeeds | None:
        hook = "visplay_engine_needs"
        plugin, needs = self._first(hook, role=role)
        if plugin is not None and (not isinstance(needs, EngineNeeds) or needs.gpus < 1
                                   or not 0.0 < needs.memory_fraction <= 1.0):
            raise _fail(plugin, hook, f"expected EngineNeeds with gpus >= 1 and 0 < memory_fraction <= 1, got "
                                      f"{_short(needs)}")
        return needs

    def footprint(self, facts: ModelFacts, placement: Any, nproc: int, gpu_memory_gib: float
                  ) -> list[tuple[str, Footprint]]:
        hook = "visplay_footprint"
        out = []
        for plugin, part in self._each(hook, facts=facts, placement=placement, nproc=nproc,
                                       gpu_memory_gib=gpu_memory_gib):
            if not isinstance(part, Footprint):
                raise _fail(plugin, hook, f"expected a Footprint, got {type(part).__name__}")
            for item in part.items:
                _finite(plugin, hook, f"memory item {item.name!r}", item.gib)
            out.append((plugin, part))
        return out

    def plan_choices(self, visible: int) -> list[list[str]]:
        """Every plugin's override lists for a box of ``visible`` GPUs, in plugin order then preference."""
        hook = "visplay_plan_choices"
        out: list[list[str]] = []
        for plugin, choices in self._each(hook, visible=visible):
            if not isinstance(choices, list) or not all(
                    isinstance(c, list) and c and all(isinstance(o, str) and "=" in o for o in c) for c in choices):
                raise _fail(plugin, hook, f"expected a list of non-empty lists of 'key=value' strings, got "
                                          f"{_short(choices)}")
            out += choices
        return out

    def check_inputs(self, skip: frozenset[str] = frozenset()) -> list[str]:
        """Every line of what the plugins checked (they raise RecipeError when something is missing)."""
        return [str(line) for _, lines in self._each("visplay_check_inputs", skip=skip) for line in lines]
