"""Hook specifications: the contract between the visplay engine and its plugins.

Every hook takes ``ctx`` first: the :class:`visplay.context.RunContext` of the run (recipe, run log, seed
derivation, current iteration/phase/step). Hooks marked *firstresult* stop at the first non-None result: a plugin
that does not handle a request returns None (for example a model backend asked for a backend name it does not
provide). Plugins registered with ``tryfirst=True`` run before the built-in ones; that is how the replay plugin
answers the sampling hooks from a log and how a third party overrides a default.

Determinism: a hook that draws random numbers uses only the seeds it is given (or ``ctx.seed_for(...)``), never
global RNG state, and returns results in the order of its inputs. Hooks must not mutate their inputs.

The five hook points of the product are the first five banners below; the rest support them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from visplay.context import RunContext
    from visplay.eval.protocol import EvalProtocol
    from visplay.types import (
        AnswerItem,
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
        QuestionItem,
        Sampler,
        Vote,
    )

PROJECT = "visplay"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------------------------------------------
# 1. question generation
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def visplay_generate_questions(
    ctx: RunContext, sampler: Sampler, images: Sequence[ImageRecord], n: int, seeds: Sequence[int]
) -> list[list[Generation]] | None:
    """Sample ``n`` raw questioner generations for each image.

    :param sampler: the questioner's sampler (its current weights).
    :param images: the images, in order.
    :param n: generations per image (G in the paper).
    :param seeds: one request seed per image.
    :return: ``len(images)`` lists of ``n`` generations. The prompt (variant-specific) is the plugin's choice and
        is recorded in each Generation. Stops at first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# 2. answer sampling
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def visplay_sample_answers(
    ctx: RunContext, sampler: Sampler, questions: Sequence[AskedQuestion], n: int,
    seeds: Sequence[int], purpose: str,
) -> list[list[Generation]] | None:
    """Sample ``n`` reasoner answers for each question.

    :param sampler: the reasoner's sampler (frozen reasoner_{i-1} for votes, the training reasoner for rollouts).
    :param questions: :class:`~visplay.types.AskedQuestion` (image, text, qtype: what the question-parsing hook
        said of it), in order.
    :param n: answers per question (m for votes, the rollout group size for training).
    :param seeds: one request seed per question.
    :param purpose: ``"vote"`` (silver labels) or ``"rollout"`` (reasoner training); a plugin may prompt alike.
    :return: ``len(questions)`` lists of ``n`` generations. Stops at first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# 3. reward
# -------------------------------------------------------------------------------------------------------------


@hookspec
def visplay_reward_components(
    ctx: RunContext, role: str, items: Sequence[QuestionItem] | Sequence[AnswerItem]
) -> dict[str, list[float]] | None:
    """Score a batch for one role with named components.

    :param role: ``"questioner"`` (items are QuestionItem) or ``"reasoner"`` (items are AnswerItem).
    :return: {component name: one finite float per item} or None when this plugin has nothing for this role.
        All plugins are called; component names must be unique across plugins (a clash is an error naming both)
        and ``total`` is reserved. Every component is logged separately in ``rewards`` with the producing plugin.
    """


@hookspec(firstresult=True)
def visplay_combine_rewards(
    ctx: RunContext, role: str, components: dict[str, list[float]],
    items: Sequence[QuestionItem] | Sequence[AnswerItem],
) -> list[float] | None:
    """Turn the named components into one scalar reward per item (the paper's formula by default).

    A third-party plugin replaces the rule by returning a list from a ``tryfirst`` implementation.
    Stops at first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# 4. filtering
# -------------------------------------------------------------------------------------------------------------


@hookspec
def visplay_filter_questions(ctx: RunContext, items: Sequence[QuestionItem]) -> list[FilterDecision] | None:
    """Decide which voted questions enter the reasoner's training set.

    :return: one FilterDecision per item, or None to abstain. A question is kept only if no plugin rejects it;
        the first rejecting plugin's reason is logged (``filters`` table), otherwise the reason ``"kept"``.
    """


# -------------------------------------------------------------------------------------------------------------
# 5. optimizer
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def visplay_make_optimizer(ctx: RunContext, role: str, policy: Policy) -> Optimizer | None:
    """Build the optimizer named by ``recipe.optimizer.name`` for a role's policy.

    :return: an :class:`~visplay.types.Optimizer`: ``update(rollouts) -> UpdateResult`` (turns rewards into
        advantages and applies one policy update to ``policy``; deterministic given its inputs; the groups it left
        out of the update, if any, in ``UpdateResult.dropped_groups``, logged one ``dropped_groups`` row each),
        ``save(directory) -> {file: sha256}`` and ``load(directory)`` for its own state (safetensors/JSON, never
        pickle); or None when the name is not this plugin's. Stops at first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# parsing and answers
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def visplay_parse_question(ctx: RunContext, text: str) -> ParsedQuestion | None:
    """Parse one questioner generation into a question (validity per the recipe's variant).

    Must never raise on malformed text: it returns ``ParsedQuestion(valid=False, reason=...)``.
    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def visplay_extract_answers(ctx: RunContext, texts: Sequence[str]) -> list[str | None] | None:
    """Extract the final answer from each reasoner generation (None: no answer). Must never raise.

    Stops at first non-None result.
    """


@hookspec(firstresult=True)
def visplay_answer_key(ctx: RunContext, answer: str) -> str | None:
    """Canonical key of an extracted answer: equal keys count as the same vote.

    Domain plugins add rules with a ``tryfirst`` implementation that returns a key for answers it recognises and
    None otherwise. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def visplay_vote(ctx: RunContext, answers: Sequence[str | None], keys: Sequence[str | None]) -> Vote | None:
    """Count one question's m extracted answers (and their keys) into a Vote: silver label and confidence.

    ``ctx.phase`` says which vote it is (``questioner``: the questioner's reward; ``reasoner_set``: silver labels).
    None (no plugin answers) falls back to :func:`visplay.votes.majority_vote` (equal keys = one vote). Stops at
    first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# recipe
# -------------------------------------------------------------------------------------------------------------


@hookspec
def visplay_recipe_sections() -> dict[str, type] | None:
    """The recipe sections this plugin owns (the idea of ``pytest_addoption``).

    :return: {section name: dataclass type}. Each section lives at ``plugins.<name>`` in a recipe and is
        validated by the loader exactly like the core's sections (unknown key, wrong type, closest-key hint,
        exit 2 before anything is created); field docstrings are what ``visplay recipe --explain`` prints. A
        dataclass may define ``validate(self) -> dict[str, str]`` returning {key under the section: problem}.
        A section may also declare ``legacy_keys``, ``variant_defaults`` and ``path_keys`` (class attributes;
        :class:`visplay.config.SectionProtocol`). Read a section with ``visplay.api.plugin_section(recipe, name)``.
        Called without a run context.
    """


@hookspec
def visplay_names() -> dict[str, list[str]] | None:
    """The names this plugin serves, by kind, so a recipe naming something nobody serves is refused at load.

    :return: {kind: [names]}, kinds ``backend`` (``model.backend``), ``image_source`` (``data.source``),
        ``sampler`` (``sampler.<role>``), ``optimizer`` (``optimizer.name``), ``judge`` (``eval.judge``), ``protocol`` (``eval.protocol``),
        ``reward_component`` (the components of ``visplay_reward_components``, for weights naming them); or None.
        A kind is checked only when every plugin implementing its serving hook (``visplay_load_policy``,
        ``visplay_image_source``, ``visplay_make_sampler``, ``visplay_make_optimizer``, ``visplay_judge``,
        ``visplay_eval_protocol``,
        ``visplay_reward_components``)
        declares names for it. Called without a run context.
    """


# -------------------------------------------------------------------------------------------------------------
# data and models
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def visplay_image_source(ctx: RunContext, name: str, options: dict[str, Any]) -> ImageSource | None:
    """Open the image pool named ``recipe.data.source``.

    :param name: the source name (e.g. ``folder``, ``parquet``, ``procedural``, ``games``).
    :param options: ``recipe.data`` as a plain dict.
    :return: an ImageSource, or None when the name is not this plugin's. Bad files are skipped and reported with
        ``ctx.log.event(kind="image_skipped", ...)``; an empty pool is an error naming the path.
        Stops at first non-None result.
    """


@hookspec(firstresult=True)
def visplay_reasoner_questions(
    ctx: RunContext, iteration: int, images: Sequence[ImageRecord]
) -> list[tuple[ImageRecord, str, str]] | None:
    """Supply the reasoner's training set from known answers instead of questioner + votes (gold training).

    :param iteration: the iteration whose reasoner set is being built.
    :param images: the images the engine would have sent to the questioner for the set, in order.
    :return: (image, question text, gold answer) triples, in order, or None to let the loop build the set
        from the questioner and silver labels as usual. When a list comes back the engine skips question
        generation, votes and filtering for the set, and each rollout's AnswerItem carries ``gold`` (its
        ``silver_label``/``silver_key`` are the gold answer and its key, so the accuracy reward scores against
        gold). Stops at first non-None result.
    """


@hookspec(firstresult=True)
def visplay_question_kinds(ctx: RunContext, questions: Sequence[tuple[str, str]]) -> list[str | None] | None:
    """Name the kind of each question (e.g. a game's template, ``2048/tile_at``), for the per-kind signals of
    self-play collapse and the guards that act per kind (plugins/visplay_collapse).

    :param questions: (image id, question text) pairs of one iteration's reasoner set.
    :return: one kind or None (not this plugin's to name) per question, or None to abstain; the caller names the
        rest by the form of their silver label (``answer/number``, ``answer/yes-no``...). Stops at first
        non-None result.
    """


@hookspec(firstresult=True)
def visplay_load_policy(ctx: RunContext, role: str, init_from: str | None) -> Policy | None:
    """Load the model for a role from ``recipe.model`` (backend ``recipe.model.backend``).

    :param init_from: a checkpoint directory written by ``Policy.save`` to start from instead of the base model.
    :return: a Policy, or None when the backend is not this plugin's. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def visplay_make_sampler(ctx: RunContext, role: str, policy: Policy) -> Sampler | None:
    """Build the sampler named by ``recipe.sampler.<role>`` over a policy's weights (built in: ``hf`` from the
    models plugin, ``vllm`` from the vllm plugin); None when the name is not this plugin's. A sampler that keeps
    its own copy of the weights implements ``refresh()`` (:class:`~visplay.types.RefreshableSampler`).

    Stops at first non-None result.
    """


# -------------------------------------------------------------------------------------------------------------
# run lifecycle, evaluation, logging
# -------------------------------------------------------------------------------------------------------------


@hookspec
def visplay_run_start(ctx: RunContext, questioner: Policy, reasoner: Policy) -> dict[str, float] | None:
    """Called once before iteration 1 of a fresh run (e.g. a cold-start SFT). Returns metrics or None."""


@hookspec
def visplay_iteration_end(
    ctx: RunContext, iteration: int, questioner: Policy, reasoner: Policy
) -> dict[str, float] | None:
    """Called after both roles of an iteration are trained and checkpointed (e.g. gold evaluation).

    :return: metrics to log under phase ``"eval"`` (names with slashes, e.g. ``gold/accuracy``), or None.
    """


@hookspec(firstresult=True)
def visplay_judge(ctx: RunContext, name: str, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Judge model responses to benchmark items with the judge named ``name``.

    :param items: dicts with at least ``question``, ``answer`` (reference), ``response`` and ``benchmark``.
    :return: one dict per item with ``correct`` (bool) and, for model judges, ``prompt`` and ``verdict`` text;
        or None when the name is not this plugin's. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def visplay_eval_protocol(ctx: RunContext, name: str) -> EvalProtocol | None:
    """The evaluation protocol named ``eval.protocol``: prompts, image order, answer extraction, rule scoring and
    judge prompts for the benchmarks it supports (contract: :class:`visplay.eval.protocol.EvalProtocol`).

    :param name: the protocol name (built in: ``visplay``, ``released``, ``lmms-eval``).
    :return: the protocol, or None when the name is not this plugin's. Stops at first non-None result.
    """


@hookspec
def visplay_summary_fields(ctx: RunContext, iteration: int) -> dict[str, float | tuple[float, float] | str] | None:
    """A plugin's own numbers for an iteration's summary: the console line after each iteration (for iteration 0,
    the ``start (questioner_v0, reasoner_v0): ...`` line) and the report's per-iteration table (the core knows
    no plugin's metric names).

    :param iteration: the iteration just finished (0: the starting models), read from ``ctx.log``.
    :return: {label: value} in display order (a float is printed with 3 decimals; a (value, standard error) pair
        as ``0.307±0.019`` and drawn with an error bar in the report), or None.
    """


@hookspec
def visplay_table_docs() -> dict[str, tuple[str, dict[str, str]]] | None:
    """What the run-log tables a plugin declares (``RunLog.declare_table``) hold: written into the ``datasette.json``
    beside each run.db with the core tables' docs, so datasette describes every table and column.

    :return: {table: (what one row is, {column: meaning})}, the table's columns in schema order, or None. Called
        without a run context, when a run starts.
    """


@hookspec
def visplay_add_commands(subparsers: Any) -> dict[str, Any] | None:
    """Add subcommands to ``visplay`` (the idea of datasette's ``register_commands``).

    :param subparsers: the ``argparse`` subparsers of the ``visplay`` command; add yours with
        ``subparsers.add_parser(name, help=..., description=...)``.
    :return: {command name: handler(args: argparse.Namespace) -> exit status}, or None. A name the core already
        uses is refused. Called without a run context, whenever the command line is parsed.
    """


@hookspec
def visplay_log_metrics(ctx: RunContext, iteration: int, phase: str, step: int, metrics: dict[str, float],
                        timing: dict[str, float]) -> None:
    """Observe metrics after they are committed to the run log (a sink: TensorBoard, W&B, a CSV...).

    ``metrics`` are the step's run-log rows; ``timing`` its wall-clock seconds in this process (``timing_s/step``
    and, for the steps that have them, ``timing_s/gen``, ``vote``, ``reward``, ``update``, ``filter``,
    ``save_checkpoint``: docs/metrics.md). Timings differ from run to run, so they are never in the run log; an
    implementation may leave the ``timing`` parameter out.
    """


# -------------------------------------------------------------------------------------------------------------
# planning: what a recipe needs of a box (``--dry-run``), asked of the plugins that serve it
# -------------------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def visplay_model_facts(ctx: RunContext) -> ModelFacts | None:
    """Describe the recipe's model without loading weights (the backend plugin of ``model.backend``): parameter
    counts, bytes, and the per-token figures the planner multiplies (KV cache, activations, prompt allowance).

    ``ctx.log`` is None. ``model.path`` may be ``visplay.api.NOT_GIVEN`` (a dry run that was not given it): answer
    from built-in facts, or raise RecipeError naming the key. Stops at first non-None result.
    """


@hookspec(firstresult=True)
def visplay_engine_needs(ctx: RunContext, role: str) -> EngineNeeds | None:
    """What the sampler serving ``sampler.<role>`` needs of the GPUs when it runs in processes of its own (a vLLM
    engine: GPUs per engine, the share of each GPU's memory it reserves); None when it samples inside the training
    processes (or the name is not this plugin's). Placement (visplay/scale/placement.py) splits the box from this.
    Stops at first non-None result.
    """


@hookspec
def visplay_plan_choices(ctx: RunContext, visible: int) -> list[list[str]] | None:
    """Overrides that adapt the recipe to a box of ``visible`` GPUs, most preferred first (e.g. fewer GPUs per
    engine than the recipe's 8-GPU layout); each is a list of ``key=value`` strings for this plugin's own keys.

    A dry run plans the recipe as given; when that does not place or fit, it tries each plugin's choices in turn
    (skipping keys the user set on the command line), plans with the first that fits and names it. None: nothing
    to offer.
    """


@hookspec
def visplay_footprint(ctx: RunContext, facts: ModelFacts, placement: Any, nproc: int,
                      gpu_memory_gib: float) -> Footprint | None:
    """Report this plugin's share of the recipe's memory and the plan lines only it can write.

    :param facts: the model's facts (``visplay_model_facts``).
    :param placement: the :class:`visplay.scale.placement.Placement` (which GPUs sample, which train).
    :param nproc: training processes.
    :param gpu_memory_gib: memory of each GPU.
    :return: a :class:`~visplay.types.Footprint`: memory items per place (``training`` per training GPU,
        ``sampling/<role>`` per engine GPU, ``disk/snapshot`` and ``disk/weights``), each with the recipe key that
        shrinks it; extra plan lines; and problems that make the plan impossible (each naming a key). All plugins
        are called; the planner adds the items up and places them. ``ctx.log`` is None.
    """


@hookspec
def visplay_check_inputs(ctx: RunContext, skip: frozenset[str]) -> list[str] | None:
    """Check the local files this plugin's settings name, before anything is created (a run, a dry run).

    :param skip: dotted keys not to check (a dry run that was not given them).
    :return: one line per thing checked (``"model.path /models/x (config.json found)"``), or None; raise
        RecipeError naming the key (with the recipe's ``setup`` text) when a file is missing. ``ctx.log`` is None.
    """
