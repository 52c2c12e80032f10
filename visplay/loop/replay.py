"""Exact replay from the run log: ``visplay replay runs/<name>/run.db``.

The engine runs again from the logged recipe into a NEW database, with the replay plugin
(visplay/loop/serve.py) answering the sampling hooks from the logged generations; everything downstream (parsing,
votes, confidences, filters, reward components, advantages, losses, the update and the checkpoint hashes) is
recomputed by the ordinary plugins, and the two databases are compared (visplay.log.diff). The original is opened
read-only and its sha256 is checked before and after. Modes:

- plain replay: exit 0 when every compared value is bit-identical, else 1 with the first divergence and the
  plugin that produced the value;
- slice (``--iteration I [--role R] [--step S]``): the new database starts as a copy, made through RunLog, of the
  original's steps before the slice, the checkpoints they name are copied into the new run directory, and the
  engine *resumes* from there and stops at the slice's end; only the slice is compared;
- what-if (``key=value`` overrides or extra plugins): the same, then a report of how rewards, filters, labels and
  advantages changed (exit 0); requests the log cannot answer are sampled fresh and counted;
- ``--resample``: no replay plugin; sampling is redone from the logged seed and recipe and the whole run compared.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visplay.files import write_file
from visplay.keys import rank
from visplay.log.diff import (
    DiffResult,
    Divergence,
    diff_logs,
    iter_row_pairs,
    table_order,
    values_equal,
)
from visplay.log.runlog import TABLES, RunLog, RunLogError
from visplay.log.status import LOCK_NAME, lock_holder
from visplay.loop import imagepool
from visplay.session import PluginSession

# What a replay compares: everything the engine recomputes (``runs``, ``plugins`` and ``events`` describe the
# machine and the session, not the computation).
REPLAY_TABLES = ("images", "generations", "questions", "labels", "filters", "answers", "rewards", "advantages",
                 "dropped_groups", "metrics", "checkpoints", "steps")
ROLE_PHASES = {"questioner": ("questioner",), "reasoner": ("reasoner_set", "reasoner")}
# The runs columns that say where a run computed: a replay elsewhere may differ in the floats' last bits.
MACHINE_COLUMNS = ("device", "torch", "transformers")
# Which hook computes which table's values, for naming the plugin behind a divergence.
TABLE_HOOKS = {
    "generations": "visplay_generate_questions", "questions": "visplay_parse_question",
    "labels": "visplay_answer_key", "filters": "visplay_filter_questions", "answers": "visplay_extract_answers",
    "advantages": "visplay_make_optimizer", "metrics": "visplay_make_optimizer",
    "checkpoints": "visplay_load_policy",  # Policy.save writes the weights; the optimizer's state rides along
}

Position = tuple[int, str, int]
LOG_SERVER = "replay-log"  # the name the replay's log server is registered under


class ReplayUsageError(RunLogError):
    """A replay request that cannot be served (bad slice, output on top of the input...). Nothing was modified."""


@dataclass
class Slice:
    """The steps a replay runs: ``start`` .. ``stop`` inclusive, as (iteration, phase, step)."""

    start: Position | None = None
    stop: Position | None = None
    phase_start: bool = False  # a mid-phase start fell back to the phase's first step (its state was pruned)

    def contains(self, position: tuple) -> bool:
        if self.start is None:
            return True
        if not position:
            return False
        return _rank(self.start) <= position <= _rank(self.stop)


@dataclass
class ReplayReport:
    """What a replay did and found."""

    original: Path
    replayed: Path
    mode: str
    diff: DiffResult
    slice: Slice
    seconds: float
    served: dict[str, int] = field(default_factory=dict)
    sampled_fresh: dict[str, int] = field(default_factory=dict)
    hook_order: dict[str, list[str]] = field(default_factory=dict)
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    unchecked: dict[str, int] = field(default_factory=dict)  # served rows logged before digests existed
    live: str | None = None  # pid of the process that held the run's lock (the run was being written)
    live_prefix: tuple[Position | None, int] | None = None  # a live run's last committed step and step count
    machines: tuple[str, str] | None = None  # (logged, replayed) machine when they differ (MACHINE_COLUMNS)

    @property
    def ok(self) -> bool:
        return self.diff.equal


def _rank(position: Position) -> tuple[int, int, int]:
    return rank(position)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- slices ---------------------------------------------------------------------------------------------------


def plan_slice(log: RunLog, iteration: int | None, role: str | None, step: int | None,
               live: str | None = None) -> Slice:
    """The logged steps named by ``--iteration/--role/--step`` (all of them when none is given); ``live``: the pid
    of a process still writing the run (named when the slice is not committed yet)."""
    if iteration is None:
        if role is not None or step is not None:
            raise ReplayUsageError("--role and --step need --iteration")
        return Slice()
    if step is not None and role is None:
        raise ReplayUsageError("--step needs --role (questioner or reasoner)")
    done = sorted(log.done_steps(), key=_rank)
    phases = ROLE_PHASES[role] if role else None
    if step is not None:
        phases = ("questioner",) if role == "questioner" else ("reasoner",)
    chosen = [s for s in done if s[0] == iteration and (phases is None or s[1] in phases)
              and (step is None or s[2] == step)]
    if not chosen:
        logged = sorted({s[0] for s in done})
        raise ReplayUsageError(f"{log.path}: no committed step matches --iteration {iteration}"
                               + (f" --role {role}" if role else "") + (f" --step {step}" if step is not None else "")
                               + f" (logged iterations: {logged or 'none'}"
                               + (f"; process {live} is still writing the run" if live else "") + ")")
    return Slice(start=chosen[0], stop=chosen[-1])


def _state_dir(run_dir: Path, log: RunLog, position: Position) -> Path | None:
    """The state checkpoint committed with ``position`` when it is still on disk."""
    rows = log.checkpoint_rows(iteration=position[0], role=position[1], step=position[2])
    for row in rows:
        if row["path"] and (run_dir / row["path"]).is_dir():
            return run_dir / row["path"]
    return None


def resolve_start(log: RunLog, run_dir: Path, plan: Slice) -> Slice:
    """Start mid-phase only where the previous step's state is on disk; else at the phase's first step."""
    if plan.start is None or plan.start[2] == 0 or plan.start[1] not in ("questioner", "reasoner"):
        return plan
    iteration, phase, step = plan.start
    if _state_dir(run_dir, log, (iteration, phase, step - 1)) is not None:
        return plan
    first = min((s for s in log.done_steps() if s[:2] == (iteration, phase)), key=_rank)
    return Slice(start=first, stop=plan.stop, phase_start=True)


# --- the new database -----------------------------------------------------------------------------------------


def _position_of(row: dict[str, Any]) -> tuple:
    from visplay.log.diff import row_position

    return row_position(row)


def copy_prefix(src: RunLog, dst: RunLog, start: Position, src_dir: Path, dst_dir: Path, recipe: Any) -> int:
    """Copy the original's steps before ``start`` (rows through RunLog, checkpoints as files); return steps copied.

    The ``runs`` row carries the replay's recipe, so the engine resumes with it (a what-if recipe included).
    """
    from visplay.config import recipe_sha256, recipe_yaml

    before = [s for s in sorted(src.done_steps(), key=_rank) if _rank(s) < _rank(start)]
    run = dict(src.run() or {})
    run.update(status="running", recipe_yaml=recipe_yaml(recipe), recipe_sha256=recipe_sha256(recipe))
    dst.set_run(**run)
    write_file(dst_dir / "recipe.yaml", recipe_yaml(recipe))
    with dst.transaction():
        for table in ("plugins", "images"):
            dst.insert(table, src.rows(table))
        # an accepted image change names the pool the run went on with: the replay's resume compares with it
        dst.insert("events", src.rows("events", "kind = ?", [imagepool.EVENT]))
    ranks = {_rank(s) for s in before}
    by_step: dict[tuple, dict[str, list[dict]]] = {}
    plugin_tables = [t for t in src.tables() if t not in TABLES and not t.startswith(("sqlite_", "_"))]
    for table in plugin_tables:  # e.g. the games plugin's gold_truth; rows of no step are copied whole
        dst.declare_table(table, src.db[table].columns_dict, pk=_plugin_pk(src, table))
        with dst.transaction():
            dst.insert(table, [row for row in src.rows(table) if not _position_of(row)])
    for table in [*TABLES, *plugin_tables]:
        if table in ("runs", "plugins", "images", "steps", "events"):
            continue
        for row in src.rows(table):
            position = _position_of(row)
            if position and position < _rank(start):
                # a row whose position names no step (e.g. a base checkpoint) goes with the last copied step
                owner = position if position in ranks else max(ranks) if ranks else None
                if owner is not None:
                    by_step.setdefault(owner, {}).setdefault(table, []).append(row)
    for iteration, phase, step in before:
        with dst.step(iteration, phase, step):
            for table, rows in by_step.get(_rank((iteration, phase, step)), {}).items():
                dst.insert(table, rows)
                if table == "checkpoints":
                    _copy_checkpoints(rows, src_dir, dst_dir)
    return len(before)


def _plugin_pk(log: RunLog, table: str) -> str | tuple[str, ...] | None:
    pks = [c for c in log.db[table].pks if c != "rowid"]
    return None if not pks else pks[0] if len(pks) == 1 else tuple(pks)


def _copy_checkpoints(rows: list[dict[str, Any]], src_dir: Path, dst_dir: Path) -> None:
    # Copies, not links: the replayed engine must never be able to touch the original's files.
    for row in rows:
        if row["path"] and (src_dir / row["path"]).is_dir():
            target = dst_dir / row["path"]
            if target.exists():
                shutil.rmtree(target)
            try:
                shutil.copytree(src_dir / row["path"], target)
            except (FileNotFoundError, shutil.Error) as exc:  # a live run pruned it while it was copied
                raise ReplayUsageError(f"checkpoint {src_dir / row['path']} disappeared while the replay copied it "
                                       f"(the run is still being written and pruned it): replay the slice "
                                       f"again, or once the run has ended") from exc


def default_out(db: Path) -> Path:
    return db.parent / "replay" / "run.db"


# What a replay's run directory may hold; anything else means it is a user's folder, which we never delete.
_OURS = {"run.db", "run.db-wal", "run.db-shm", "recipe.yaml", "checkpoints", "report",
         "tensorboard", "wandb", "mlruns", "datasette.json",  # metrics sinks, datasette metadata
         "run.lock"}  # the engine's lock on its run directory (visplay.loop.runsetup.run_lock)


def _prepare_out(db: Path, out: Path) -> Path:
    """Remove a previous replay output (never the original); return the replay's (empty) run directory."""
    if out.resolve() == db.resolve():
        raise ReplayUsageError(f"--out {out} is the original database; replay never writes to it")
    run_dir = out.parent if out.name == "run.db" else out.parent / f"{out.stem}.files"
    if run_dir.resolve() in (db.parent.resolve(), *db.resolve().parents):
        raise ReplayUsageError(f"--out {out}: the replay's run directory {run_dir} would hold the original run; "
                               f"choose a file in another folder")
    if run_dir.is_dir():
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in _OURS)
        if foreign:
            raise ReplayUsageError(f"--out {out}: {run_dir} holds files a replay did not write ({foreign[:3]}); "
                                   f"choose another place")
        shutil.rmtree(run_dir)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{out}{suffix}").unlink(missing_ok=True)
    run_dir.mkdir(parents=True)
    return run_dir


def logged_plugins(log: RunLog) -> set[str] | None:
    """The plugins the original run had (its ``plugins`` table), so a plugin installed since does not take part;
    None when the log lists none (then every installed plugin does)."""
    names = {row["name"] for row in log.rows("plugins")}
    return names or None


def load_logged_recipe(log: RunLog, overrides: Sequence[str], session: PluginSession) -> Any:
    """The run's resolved recipe (``runs.recipe_yaml``) with ``key=value`` overrides applied, loaded in memory by
    the replay's session (keys that moved into plugin sections since the run are moved, with a warning)."""
    from omegaconf import OmegaConf

    run = log.run()
    if not run or not run.get("recipe_yaml"):
        raise ReplayUsageError(f"{log.path}: the run log holds no recipe (runs.recipe_yaml); cannot replay it")
    return session.load_recipe(OmegaConf.create(run["recipe_yaml"]), list(overrides))


# --- running --------------------------------------------------------------------------------------------------


def replay_run(db: str | Path, *, overrides: Sequence[str] = (), iteration: int | None = None,
               role: str | None = None, step: int | None = None, resample: bool = False,
               out: str | Path | None = None, quiet: bool = True, tolerance: float = 0.0,
               extra_plugins: Sequence[Any] = (), what_if: bool | None = None, limit: int = 20) -> ReplayReport:
    """Replay a run into a new database and compare; see the module docstring. The original is never written.

    ``extra_plugins`` are registered as the original run's were (a run made with extra plugins replays with the
    same ones); ``what_if`` (default: True when there are overrides) reports changes instead of failing on them,
    e.g. with a different reward plugin among ``extra_plugins``.
    """
    from visplay.loop.engine import run_recipe
    from visplay.loop.serve import ReplayPlugin
    from visplay.plugins import hook_table

    db = Path(db)
    out = Path(out) if out else default_out(db)
    what_if = bool(overrides) if what_if is None else what_if
    mode = "resample" if resample else "what-if" if what_if else "replay"
    original_hash = sha256_file(db) if db.is_file() else None
    started = time.perf_counter()
    live = lock_holder(db.parent)  # a process still writing the run: replay what it had committed when we began
    # one read transaction for the whole replay: steps the live run commits meanwhile are not seen
    with RunLog(db, readonly=True) as original, original.snapshot():
        original.check_arrays()  # a damaged token-id or log-prob array would otherwise be served as logged
        plan = resolve_start(original, db.parent, plan_slice(original, iteration, role, step, live=live))
        if plan.stop is None and (original.run() or {}).get("status") != "finished":
            if not original.done_steps():
                raise ReplayUsageError(f"{db}: no step of this run is committed yet, nothing to replay"
                                       + (f" ({_live_words(db, live)})" if live else ""))
            # an interrupted or live run: replay what it committed, no further
            plan = Slice(stop=max(original.done_steps(), key=_rank))
        check_image_changes(original, plan, db)
        prefix = (plan.stop, len(original.done_steps())) if live else None
        run_dir = _prepare_out(db, out)
        logged = logged_plugins(original)
        plugin = ReplayPlugin(original, missing="sample" if what_if else "error", serve=not resample)
        plugin.plugin_name = LOG_SERVER
        session = PluginSession(extra=(plugin, *extra_plugins), only=logged)  # the replay's one plugin manager
        recipe = load_logged_recipe(original, overrides, session)
        if plan.start is not None:
            with RunLog(out, create=True) as new:
                copy_prefix(original, new, plan.start, db.parent, run_dir, recipe)
        # the replay's own metrics sinks are a side output: one that cannot open is a warning there, not a refusal
        run_recipe(recipe, session=session, run_dir=run_dir, db_path=out, resume=plan.start is not None,
                   quiet=quiet, stop=plan.stop, skip_checks={"plugins.metrics"})
        with RunLog(out, readonly=True) as new:
            tables = REPLAY_TABLES if plan.start is None else tuple(t for t in REPLAY_TABLES if t != "images")
            tables += tuple(t for t in table_order(original, new) if t not in TABLES)  # plugin-owned tables
            result = diff_logs(original, new, tables=tables, tolerance=tolerance, limit=limit,
                               scope=lambda row: plan.contains(_position_of(row)))
            changes = what_if_changes(original, new, plan, tolerance) if what_if else {}
            machines = machine_change(original.run() or {}, new.run() or {})
    live = live or lock_holder(db.parent)  # a run resumed while we replayed writes the file too
    if original_hash is not None and live is None and sha256_file(db) != original_hash:  # a guarantee: checked
        raise RuntimeError(f"{db} changed during replay; this is a bug in visplay")
    return ReplayReport(original=db, replayed=out, mode=mode, diff=result, slice=plan,
                        seconds=time.perf_counter() - started, served=dict(plugin.served),
                        sampled_fresh=dict(plugin.sampled_fresh), changes=changes, unchecked=dict(plugin.unchecked),
                        hook_order=hook_table(session.pm), live=live, live_prefix=prefix, machines=machines)


def machine_change(logged: dict[str, Any], replayed: dict[str, Any]) -> tuple[str, str] | None:
    """(logged, replayed) descriptions of the machine when device or library versions differ, else None."""
    def words(row: dict[str, Any]) -> str:
        return ", ".join(f"{c} {row.get(c)}" for c in MACHINE_COLUMNS)

    if all(logged.get(c) == replayed.get(c) for c in MACHINE_COLUMNS):
        return None
    return words(logged), words(replayed)


def check_image_changes(log: RunLog, plan: Slice, db: Path) -> None:
    """Refuse a replay of steps that ran on images a resume accepted as changed or removed (they are not in
    ``data.images`` any more, so each would diverge for want of its image, not because of a plugin); name the
    change and the slice that can be replayed: from the first iteration after the last change."""
    changes = imagepool.pool_events(log)
    if not changes:
        return
    last = changes[-1]
    after = tuple(last["after"]) if last.get("after") else None
    if after is None:  # accepted before any step was committed: every step ran on the new pool
        return
    if plan.start is not None and _rank(plan.start) > _rank(after):
        return
    later = sorted({s[0] for s in log.done_steps() if s[0] > after[0]})
    way = (f"replay the steps from there on: `visplay replay {db} --iteration {later[0]}`" if later
           else "no whole iteration of the run came after it, so no part of it can be replayed")
    added, removed = len(last.get("added", [])), len(last.get("removed", []))
    names = ", ".join(i["source"] for i in [*last.get("removed", []), *last.get("added", [])][:imagepool.NAMED])
    raise ReplayUsageError(
        f"{db}: the run's image pool changed after step {after} and its resume went on with "
        f"{imagepool.ACCEPT_FLAG} ({imagepool.EVENT} event: {removed} image(s) removed or modified, {added} new; "
        f"{names}); the steps up to there ran on images the pool no longer has, so replaying them would report "
        f"divergences of the images, not of a plugin. {way[0].upper()}{way[1:]}")


def _live_words(db: Path, holder: str) -> str:
    return f"process {holder} holds {db.parent / LOCK_NAME} and is still writing it"


# --- what-if ------------------------------------------------------------------------------------------------

WHAT_IF_COLUMNS = {"rewards": "value", "advantages": "advantage", "labels": "confidence", "filters": "keep"}


def what_if_changes(original: RunLog, new: RunLog, plan: Slice, tolerance: float = 0.0,
                    top: int = 5) -> dict[str, dict[str, Any]]:
    """Per table of WHAT_IF_COLUMNS: rows compared, changed, only in one run, and the largest changes."""
    report: dict[str, dict[str, Any]] = {}
    for table, column in WHAT_IF_COLUMNS.items():
        stats = {"compared": 0, "changed": 0, "only_original": 0, "only_replay": 0, "largest": []}
        changed: list[tuple[float, str, Any, Any]] = []
        for key, row_a, row_b in iter_row_pairs(original, new, table):
            row = row_a if row_a is not None else row_b
            if not plan.contains(_position_of(row)):
                continue
            if row_b is None:
                stats["only_original"] += 1
                continue
            if row_a is None:
                stats["only_replay"] += 1
                continue
            stats["compared"] += 1
            a, b = row_a[column], row_b[column]
            if not values_equal(a, b, tolerance):
                stats["changed"] += 1
                delta = abs(float(b or 0) - float(a or 0))
                changed.append((delta, "/".join(str(k) for k in key), a, b))
        stats["largest"] = sorted(changed, key=lambda c: (-c[0], c[1]))[:top]
        if table == "filters":
            stats["kept_to_dropped"] = sum(1 for _, _, a, b in changed if a and not b)
            stats["dropped_to_kept"] = sum(1 for _, _, a, b in changed if b and not a)
        report[table] = stats
    return report


# --- reporting ----------------------------------------------------------------------------------------------


def producer_of(div: Divergence, replayed: Path, hook_order: dict[str, list[str]], served: bool) -> str:
    """The plugin (and hook) behind a divergent value: read from the replayed log's ``producer`` columns for
    rewards and filter decisions; for other tables, the first plugin in call order of the hook that computes them."""
    hook = TABLE_HOOKS.get(div.table, "the engine")
    found = None
    if div.table in ("rewards", "filters"):
        equal = ({"key": div.key[0], "component": div.key[1]} if div.table == "rewards"
                 else {"question_key": div.key[0]})
        with RunLog(replayed, readonly=True) as log:
            rows = log.rows_matching(div.table, **equal)
        found = rows[0].get("producer") if rows else None
        if div.table == "rewards":
            hook = ("visplay_combine_rewards" if equal["component"] == "total"
                    else f"visplay_reward_components, component {equal['component']!r}")
    elif div.table == "generations":
        if served:
            return "the replay's log server (logged generations; a row missing here was not requested by the replay)"
        hook = "visplay_generate_questions / visplay_sample_answers"
        found = _first(hook_order, "visplay_generate_questions") or _first(hook_order, "visplay_sample_answers")
    elif div.table == "labels" and div.column in ("confidence", "silver_label", "silver_key"):
        hook = "visplay.loop.votes.majority_vote over keys from visplay_answer_key"
        found = _first(hook_order, "visplay_answer_key")
    elif hook.startswith("visplay_"):
        found = _first(hook_order, hook)
        names = [n for n in hook_order.get(hook, []) if n != LOG_SERVER]
        if len(names) > 1 and _firstresult(hook):  # which one answered is not logged: name them in call order
            return (f"plugins {', '.join(repr(n) for n in names)} (hook {hook}, firstresult: the first of them "
                    f"that answers decides)")
    return f"plugin {found!r} (hook {hook})" if found else f"hook {hook}"


def _firstresult(hook: str) -> bool:
    from visplay import hookspecs

    return bool((getattr(getattr(hookspecs, hook, None), "visplay_spec", None) or {}).get("firstresult"))


def _first(hook_order: dict[str, list[str]], hook: str) -> str | None:
    names = [n for n in hook_order.get(hook, []) if n != LOG_SERVER]
    return names[0] if names else None


def format_report(report: ReplayReport, *, limit: int = 10) -> str:
    guarantee = ("original unchanged: sha256 checked before and after" if report.live is None
                 else "original opened read-only; its sha256 is not checked, its own writer changes it")
    lines = [f"{report.mode} of {report.original} -> {report.replayed} in {report.seconds:.1f} s ({guarantee})"]
    if report.live is not None and report.live_prefix is not None:
        stop, steps = report.live_prefix
        lines.append(f"live run: {_live_words(report.original, report.live)}; replayed its committed prefix "
                     f"({steps} steps, up to {stop}) as it was when the replay began; later steps are not compared")
    if report.machines is not None:
        lines.append(f"machine: logged with {report.machines[0]}; replayed with {report.machines[1]}: CPUs with "
                     "other vector kernels or other library versions sum floats in another order, so weights, "
                     "losses and what follows them can differ in their last bits (docs/replay.md, 'Across "
                     "machines')")
    if report.slice.start is not None:
        lines.append(f"slice: {report.slice.start} .. {report.slice.stop}"
                     + (" (started at the phase's first step: the earlier step state is not on disk)"
                        if report.slice.phase_start else ""))
    if report.served:
        lines.append("served from the log: " + ", ".join(f"{n} {role} generations"
                                                         for role, n in sorted(report.served.items())))
    if report.unchecked:
        lines.append("served without a digest check (logged before generations carried digests): " + ", ".join(
            f"{n} {role} generations" for role, n in sorted(report.unchecked.items())))
    if report.sampled_fresh:
        lines.append("sampled fresh (not in the log): " + ", ".join(
            f"{n} {role} requests" for role, n in sorted(report.sampled_fresh.items())))
    lines.append(report.diff.summary())
    if report.mode == "what-if":
        lines.append(_format_changes(report.changes))
    elif report.ok:
        checked = sum(s.equal for s in report.diff.tables.values())
        lines.append(f"OK: {checked} rows checked, every value identical")
    else:
        first = report.diff.first
        where, logged, replayed = first.detail or ("", first.a, first.b)
        lines += ["", f"FIRST DIVERGENCE: {first.describe()}", f"  logged:   {logged!r}",
                  f"  replayed: {replayed!r}",
                  f"  produced by: {producer_of(first, report.replayed, report.hook_order, report.mode != 'resample')}"]
        more = report.diff.divergences[1:limit]
        if more:
            lines.append("next divergences:")
            lines += [f"  {d.describe()}" for d in more]
    return "\n".join(lines)


def _format_changes(changes: dict[str, dict[str, Any]]) -> str:
    lines = ["what-if changes (original -> replayed):"]
    for table, s in changes.items():
        column = WHAT_IF_COLUMNS[table]
        extra = (f", kept->dropped {s['kept_to_dropped']}, dropped->kept {s['dropped_to_kept']}"
                 if table == "filters" else "")
        lines.append(f"  {table}.{column}: {s['changed']} of {s['compared']} changed, {s['only_original']} only in "
                     f"the original, {s['only_replay']} only in the replay{extra}")
        lines += [f"      {key}: {a!r} -> {b!r}" for _, key, a, b in s["largest"]]
    return "\n".join(lines)
