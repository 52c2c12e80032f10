"""Serving a run's logged generations back to the engine: the replay's sampling plugin.

It is part of the core's replay machinery, not an installed plugin: ``visplay replay`` builds a :class:`ReplayPlugin` over the original run log (opened
read-only) and hands it to the engine through ``extra_plugins``; its ``tryfirst`` implementations of
``visplay_generate_questions`` and ``visplay_sample_answers`` then return the logged generations instead of
sampling, and everything downstream (parsing, votes, filters, rewards, advantages, the update) is recomputed by the
ordinary plugins. A request is matched to the log by where the engine is (``ctx.iteration/phase/step``), the role
that samples, the request seed the engine passed and the sample index, so the way the engine batches its calls does
not matter. A request the log cannot answer is an error (:class:`ReplayError`), or, for a what-if replay that
changed what gets asked (``missing="sample"``), it is sampled fresh and counted.

Which plugin produced a value is not this plugin's business: the run log records it (``rewards.producer``,
``filters.producer``) and visplay.loop.replay reads it from there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from visplay.hookspecs import hookimpl
from visplay.log.runlog import generation_digest
from visplay.types import AskedQuestion, Generation, Prompt

if TYPE_CHECKING:  # pragma: no cover
    from visplay.context import RunContext
    from visplay.log.runlog import RunLog
    from visplay.types import ImageRecord

# Phases whose generations the engine logs; sampling elsewhere (e.g. a plugin's evaluation at iteration end) is
# recomputed by the ordinary sampler, which on CPU is deterministic given the weights the replay reproduced.
LOGGED_PHASES = ("questioner", "reasoner_set", "reasoner")


class ReplayError(Exception):
    """The log cannot answer a sampling request the replayed engine made."""


class ReplayPlugin:
    """Serve logged generations to the engine. ``log`` is the original run's RunLog (read-only is enough)."""

    def __init__(self, log: RunLog, *, missing: str = "error", serve: bool = True):
        if missing not in ("error", "sample"):
            raise ValueError(f"missing must be 'error' or 'sample', got {missing!r}")
        self.log = log
        self.missing = missing
        self.serve = serve  # False: answer nothing (every request goes to the ordinary sampler)
        self.served: Counter[str] = Counter()  # generations answered from the log, per role
        self.sampled_fresh: Counter[str] = Counter()  # requests the log could not answer (what-if only)
        self.passed_through: Counter[str] = Counter()  # requests outside LOGGED_PHASES, per phase
        self.unchecked: Counter[str] = Counter()  # served rows logged before digests existed, per role
        self._digests_from: tuple | None | bool = False  # the first step with digests (False: not looked up yet)
        self._steps: dict[tuple[int, str, int], dict[tuple[str, int, int], dict[str, Any]]] = {}

    # --- hooks ------------------------------------------------------------------------------------------------

    @hookimpl(tryfirst=True)
    def visplay_generate_questions(self, ctx: RunContext, sampler: Any, images: Sequence[ImageRecord], n: int,
                                   seeds: Sequence[int]) -> list[list[Generation]] | None:
        """The questioner's logged generations for these images (``n`` each, in sample order)."""
        return self._serve(ctx, "questioner", list(images), n, seeds) if self.serve else None

    @hookimpl(tryfirst=True)
    def visplay_sample_answers(self, ctx: RunContext, sampler: Any, questions: Sequence[AskedQuestion],
                               n: int, seeds: Sequence[int], purpose: str) -> list[list[Generation]] | None:
        """The reasoner's logged answers (votes or rollouts) for these questions."""
        return self._serve(ctx, "reasoner", [q.image for q in questions], n, seeds) if self.serve else None

    # --- matching ---------------------------------------------------------------------------------------------

    def _step_rows(self, iteration: int, phase: str, step: int) -> dict[tuple[str, int, int], dict[str, Any]]:
        where = (iteration, phase, step)
        if where not in self._steps:
            rows = self.log.generations_of(*where)
            self._steps = {where: {(r["role"], int(r["seed"]), int(r["sample_index"])): r for r in rows
                                   if r["seed"] is not None and r["sample_index"] is not None}}
        return self._steps[where]

    def _serve(self, ctx: RunContext, role: str, images: list[ImageRecord], n: int,
               seeds: Sequence[int]) -> list[list[Generation]] | None:
        if ctx.phase not in LOGGED_PHASES:
            self.passed_through[ctx.phase] += len(images)
            return None
        rows = self._step_rows(ctx.iteration, ctx.phase, ctx.step)
        out: list[list[Generation]] = []
        for image, seed in zip(images, seeds):
            found = [rows.get((role, int(seed), j)) for j in range(n)]
            problem = self._problem(ctx, role, image, int(seed), n, found)
            if problem is not None:
                if self.missing == "sample":
                    self.sampled_fresh[role] += len(images)
                    return None  # the ordinary sampling plugin answers this whole request
                raise ReplayError(problem)
            out.append([_generation(self._checked(row), image) for row in found])
        self.served[role] += sum(len(g) for g in out)
        return out

    def _checked(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row, if its text and token ids still hash to the digest logged with them (older logs have none):
        an edited text would otherwise be served, re-parsed and re-logged as if the model had written it."""
        if row.get("digest") is None:
            return self._undigested(row)
        if row["digest"] != generation_digest(row["text"] or "", _as_list(row["token_ids"])):
            raise ReplayError(f"{self.log.path}: generations row {row['key']!r}: its text (or token_ids) no longer "
                              f"matches the digest logged with it; the run log was edited after the run. Replay "
                              f"the untouched log, or use --resample to sample afresh instead")
        return row

    def _undigested(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row without a digest is served unchecked only where the log predates digests: every step from the
        first one with digests on was written by a version that stores one per row (a run resumed by a newer
        visplay starts having them; an older one cannot open the log), so a NULL there was cleared by hand."""
        from visplay.keys import rank

        if self._digests_from is False:
            self._digests_from = self.log.first_digested_step()
        start = self._digests_from
        if start is not None and rank((row["iteration"], row["phase"], row["step"])) >= rank(start):
            raise ReplayError(f"{self.log.path}: generations row {row['key']!r}: its digest is NULL, but every "
                              f"generation from step {start} on was logged with one; the run log was edited after "
                              f"the run (the digest cleared). Replay the untouched log, or use --resample to sample "
                              f"afresh instead")
        self.unchecked[row["role"]] += 1
        return row

    def _problem(self, ctx: RunContext, role: str, image: ImageRecord, seed: int, n: int,
                 found: list[dict | None]) -> str | None:
        where = f"iteration {ctx.iteration}, phase {ctx.phase!r}, step {ctx.step}"
        absent = [j for j, row in enumerate(found) if row is None]
        if absent:
            return (f"{self.log.path}: no logged {role} generation for request seed {seed} sample(s) {absent} "
                    f"(image {image.image_id[:12]}, {where}); the replayed run asked for something the original "
                    f"did not sample (was the recipe changed? use a what-if replay)")
        wrong = [row["key"] for row in found if row["image_id"] not in (None, image.image_id)]
        if wrong:
            return (f"{self.log.path}: logged generation {wrong[0]} is for image {found[0]['image_id'][:12]}, "
                    f"the replay asked about image {image.image_id[:12]} ({where})")
        return None


def _generation(row: dict[str, Any], image: ImageRecord) -> Generation:
    """Rebuild a Generation from its ``generations`` row; the image is the one the engine asked about."""
    prompt = Prompt(user=row["prompt_user"] or "", image=image, system=row["prompt_system"])
    # votes may be logged without log-probs (log.vote_logprobs): nothing downstream of a vote reads them
    return Generation(prompt=prompt, text=row["text"] or "", token_ids=_as_list(row["token_ids"]),
                      logprobs=_as_list(row["logprobs"]), seed=int(row["seed"]),
                      sample_index=int(row["sample_index"]), finish_reason=row["finish_reason"] or "stop")


def _as_list(value: Any) -> list:
    """RunLog decodes arrays (binary or legacy JSON) to lists; None (not logged) serves as empty."""
    return [] if value is None else list(value)
