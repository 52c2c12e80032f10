"""Fault suite, checked too late or not at all (issue 28): a killed export, --overwrite and links, old and new key
names together, the planner's dry runs and the current folder.

- ``visplay export`` SIGKILLed (a real process) while a table's part file is being written, or once it is written
  but not yet renamed: every file under a final name is whole (its table's rows), the table being written has no
  file under its name, and the next export completes.
- ``--overwrite`` never follows a link: not one planted at ``run.lock`` (refused, its target untouched), not one
  inside the run folder (deleted as a link, its target untouched), not a run_dir that is itself a link.
- An old key and its new name both given, in the file or on the command line, is refused naming both (exit 2).
- ``--dry-run`` whose recipe does not fit tries other layouts; those plan against the recipe's run_dir, never the
  current folder (before: ``run_dir="."``, so a file named ``tensorboard`` in the current folder failed them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.faults import stand_in_run

from visplay.log.runlog import RunLog

STOP = (1, "questioner", 0)

# A real `visplay export` process that SIGKILLs itself at one point of writing its N-th file (by then the part file
# exists): "half" cuts the written part to half its size first (a kill mid-write), "written" leaves it whole.
KILLER = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    import visplay.log.export as export
    from visplay.cli import main

    nth, point = int(os.environ["KILL_AT_FILE"]), os.environ["KILL_POINT"]
    real, count = export._write_parquet, [0]

    def write(log, name, path):
        real(log, name, path)
        count[0] += 1
        if count[0] == nth:
            if point == "half":
                os.truncate(path, Path(path).stat().st_size // 2)
            Path(os.environ["KILL_NOTE"]).write_text(str(path))
            os.kill(os.getpid(), signal.SIGKILL)

    export._write_parquet = write
    sys.exit(main(sys.argv[1:]))
''')


@pytest.fixture(autouse=True)
def _no_entry_points(no_autoload):
    yield


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
        return stand_in_run(tmp_path_factory.mktemp("late") / "run", stop=STOP).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The command line as a user has it (every plugin installed), with ``extra``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VISPLAY_CACHE": str(tmp_path / "cache"), **extra}
    env.pop("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", None)
    return env


@pytest.mark.parametrize("point", ["half", "written"])
def test_a_sigkilled_export_leaves_no_short_file_under_a_final_name(tmp_path, stopped_run, point):
    import pyarrow.parquet as pq

    out, note = tmp_path / "out", tmp_path / "killed-at"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    with RunLog(stopped_run / "run.db", readonly=True) as log:
        names = [t for t in log.tables() if not t.startswith("sqlite_")] + log.views()
        counts = {n: len(log.view_rows(n) if n in log.views() else log.rows(n)) for n in names}
    done = subprocess.run([sys.executable, str(script), "export", str(stopped_run), "--out", str(out), "-q"],
                          env=_env(tmp_path, KILL_AT_FILE="3", KILL_POINT=point, KILL_NOTE=str(note)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    part = Path(note.read_text())
    assert part.parent == out and part.exists()  # killed with the part file on disk, under another name
    final = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    assert len(final) == 2  # the two tables exported before the kill, and only those
    for path in final:
        assert path.stat().st_size > 0
        assert pq.read_table(path).num_rows == counts[path.name.removesuffix(".parquet")]
    written = subprocess.run([sys.executable, "-m", "visplay.cli", "export", str(stopped_run), "--out", str(out),
                              "-q"], env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stderr
    for name, count in counts.items():
        assert pq.read_table(out / f"{name}.parquet").num_rows == count


def _copy_run(stopped_run: Path, tmp_path: Path) -> Path:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run, run_dir, symlinks=True)
    return run_dir


def _outside(tmp_path: Path) -> Path:
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious\n")
    return victim


def test_overwrite_refuses_a_link_at_run_lock_and_leaves_its_target_and_the_run(tmp_path, stopped_run):
    from visplay.files import UnsafeFileError
    from visplay.loop.runsetup import prepare_run_dir

    run_dir, victim = _copy_run(stopped_run, tmp_path), _outside(tmp_path)
    (run_dir / "run.lock").unlink(missing_ok=True)
    (run_dir / "run.lock").symlink_to(victim / "precious.txt")
    with pytest.raises(UnsafeFileError, match=r"run\.lock is a symbolic link"):
        prepare_run_dir(run_dir, run_dir / "run.db", overwrite=True)
    assert (victim / "precious.txt").read_text() == "precious\n"
    with RunLog(run_dir / "run.db", readonly=True) as log:  # the run was not deleted, and still resumes
        assert log.integrity_ok() and log.count("steps") > 0


def test_overwrite_deletes_links_inside_the_run_folder_without_following_them(tmp_path, stopped_run):
    from visplay.loop.runsetup import prepare_run_dir

    run_dir, victim = _copy_run(stopped_run, tmp_path), _outside(tmp_path)
    (run_dir / "report").symlink_to(victim)  # a folder visplay writes, planted as a link to an outside folder
    (run_dir / "checkpoints" / "state" / "planted").symlink_to(victim)
    (run_dir / "recipe.yaml").unlink()
    (run_dir / "recipe.yaml").symlink_to(victim / "precious.txt")
    prepare_run_dir(run_dir, run_dir / "run.db", overwrite=True)
    assert run_dir.is_dir() and not any(run_dir.iterdir())
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_text() == "precious\n"


def test_overwrite_of_a_run_dir_that_is_a_link_is_refused_naming_it(tmp_path, stopped_run):
    from visplay.loop.runsetup import RunExistsError, prepare_run_dir

    real = _copy_run(stopped_run, tmp_path)
    link = tmp_path / "linked"
    link.symlink_to(real)
    before = sorted(p.name for p in real.iterdir())
    with pytest.raises(RunExistsError, match=r"linked is a symbolic link .*run"):
        prepare_run_dir(link, link / "run.db", overwrite=True)
    assert sorted(p.name for p in real.iterdir()) == before and link.is_symlink()


@pytest.mark.parametrize("where", ["file", "command line", "file and command line"])
def test_an_old_key_and_its_new_name_both_given_are_refused_naming_both(tmp_path, where):
    recipe = tmp_path / "r.yaml"
    body = {"file": "optimizer:\n  lr: 0.25\nplugins:\n  grpo:\n    lr: 0.5\n",
            "command line": "", "file and command line": "plugins:\n  grpo:\n    lr: 0.5\n"}[where]
    recipe.write_text("name: both\n" + body)
    overrides = {"file": [], "command line": ["optimizer.lr=0.25", "plugins.grpo.lr=0.5"],
                 "file and command line": ["optimizer.lr=0.25"]}[where]
    done = subprocess.run([sys.executable, "-m", "visplay.cli", "recipe", str(recipe), *overrides],
                          env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if where == "file and command line":  # an override wins over the file, as any override does (documented)
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2, done.stdout
    where_named = str(recipe) if where == "file" else "command line"
    assert (f"{where_named}: key 'optimizer.lr' is the old name of 'plugins.grpo.lr', and both are given; keep "
            f"only 'plugins.grpo.lr'") in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_dry_run_trying_other_layouts_neither_checks_nor_creates_files_in_the_current_folder(tmp_path):
    cwd = tmp_path / "empty"
    cwd.mkdir()
    (cwd / "tensorboard").write_text("a file where a sink would write, in the current folder only\n")
    done = subprocess.run([sys.executable, "-m", "visplay.cli", "reproduce", "qwen-vl-3b", "--dry-run", "--gpus", "4",
                           "--gpu-memory", "40", "plugins.metrics.sinks=[tensorboard]"],
                          env=_env(tmp_path), cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("chose: plugins.vllm.tensor_parallel_size=1"), done.stdout
    assert sorted(p.name for p in cwd.iterdir()) == ["tensorboard"]  # nothing created here


def test_export_never_writes_through_a_link_planted_in_its_folder(tmp_path, stopped_run):
    """Before: a link planted at the part file's fixed name (``.steps.csv.part``) was written through (the outside
    file overwritten with the table) and then renamed to ``steps.csv``, a link to the outside file."""
    from visplay.log.export import export_run

    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious\n")
    (out / ".steps.csv.part").symlink_to(victim)
    (out / "runs.csv").symlink_to(victim)
    written = export_run(stopped_run, out, fmt="csv", tables=["steps", "runs"])
    assert victim.read_text() == "precious\n"
    for name in ("steps", "runs"):
        assert not written[name].is_symlink() and written[name].read_text().startswith(
            "iteration,phase,step" if name == "steps" else "run_id,")


@pytest.mark.parametrize("gone", ["checkpoints/reasoner_v0", "checkpoints/questioner_v0/weights.safetensors",
                                  "checkpoints/state/questioner-i1-s0/weights.safetensors"])
def test_a_resume_missing_a_checkpoint_is_refused_before_the_log_is_touched(tmp_path, stopped_run, gone):
    """Before: the resume logged `run_resumed`, then failed loading (FileNotFoundError) and marked the run failed."""
    import shutil

    from support.engine import comparable_rows
    from support.faults import resume_in_process

    from visplay.log.runlog import RunLogError

    run_dir = _copy_run(stopped_run, tmp_path)
    target = run_dir / gone
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    before = comparable_rows(run_dir / "run.db")
    with RunLog(run_dir / "run.db", readonly=True) as log:
        events, status = log.count("events"), log.run()["status"]
    with pytest.raises(RunLogError, match=f"{target.name} is missing .*Nothing was written"):
        resume_in_process(run_dir)
    assert comparable_rows(run_dir / "run.db") == before
    with RunLog(run_dir / "run.db", readonly=True) as log:
        assert log.count("events") == events and log.run()["status"] == status and log.integrity_ok()


@pytest.mark.parametrize("command", ["report", "export"])
def test_a_link_planted_at_the_report_or_export_folder_is_refused_and_its_target_untouched(tmp_path, stopped_run,
                                                                                          command):
    """Before: `report/` planted as a link to an outside folder made `visplay report` delete that folder's PNG files
    (stale figures) and write into it; `export/` likewise received the export, replacing files of the same name."""
    from visplay.files import UnsafeFileError

    run_dir, victim = _copy_run(stopped_run, tmp_path), _outside(tmp_path)
    Path(victim / "holiday.png").write_bytes(b"\x89PNG precious")
    (victim / "steps.parquet").write_text("precious\n")
    (run_dir / command).symlink_to(victim)
    with pytest.raises(UnsafeFileError, match=f"{command} is a symbolic link"):
        if command == "report":
            from visplay.report.build import write_report

            write_report(run_dir)
        else:
            from visplay.log.export import export_run

            export_run(run_dir)
    assert sorted(p.name for p in victim.iterdir()) == ["holiday.png", "precious.txt", "steps.parquet"]
    assert (victim / "steps.parquet").read_text() == "precious\n"
    assert (victim / "holiday.png").read_bytes() == b"\x89PNG precious"


# A process that verifies a checkout whose first released source file is a 512 MiB sparse file, and prints how much
# its peak memory grew (KiB, as ru_maxrss counts on Linux).
HUGE = textwrap.dedent('''
    import os, resource, sys
    from pathlib import Path
    from visplay_algorithm.released_prompts import SOURCES, ReleasedPromptError, verify

    checkout = Path(sys.argv[1])
    for rel in SOURCES:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("x = 1\\n")
    with open(checkout / next(iter(SOURCES)), "wb") as f:
        f.truncate(512 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        verify(checkout)
    except ReleasedPromptError as exc:
        print("refused:", exc)
    print("grew_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
''')


def test_importing_released_prompts_from_a_checkout_with_a_huge_file_costs_no_memory(tmp_path):
    """Before: each source file was read whole to hash it (a huge file took its size in memory: 3.1 GB reported)."""
    script = tmp_path / "huge.py"
    script.write_text(HUGE)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "checkout")], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "sha256" in done.stdout, done.stdout
    grew = int(done.stdout.split("grew_kib")[1])
    assert grew < 64 * 1024, f"peak memory grew by {grew} KiB while hashing a 512 MiB file"


def test_importing_released_prompts_never_writes_through_a_planted_link(tmp_path):
    from visplay_algorithm import released_prompts

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "released"
    out.mkdir()
    (out / ".manifest.json.tmp").symlink_to(victim)  # the fixed part name the import used before
    (out / "manifest.json").symlink_to(victim)
    texts = {"questioner_user": "q", "reasoner_user": "r {question}"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(released_prompts, "verify", lambda checkout: {})
        mp.setattr(released_prompts, "extract", lambda checkout: texts)
        from visplay.files import UnsafeFileError

        with pytest.raises(UnsafeFileError, match=r"manifest\.json is a symbolic link"):
            released_prompts.import_released(tmp_path, out)
    assert victim.read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir()) == [".manifest.json.tmp", "manifest.json"]  # nothing written


@pytest.mark.parametrize("case", ["unknown table", "foreign database"])
def test_export_refuses_before_it_creates_its_folder(tmp_path, stopped_run, case):
    import sqlite3

    target = stopped_run
    if case == "foreign database":
        target = tmp_path / "notes.db"
        with sqlite3.connect(target) as conn:
            conn.execute("create table notes (body text)")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "visplay.cli", "export", str(target), "--out", str(out),
                           *(["--tables", "stepz"] if case == "unknown table" else [])],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert done.returncode == (2 if case == "unknown table" else 1), done.stderr
    assert ("no table or view named 'stepz'" if case == "unknown table" else "not a visplay run log") in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
