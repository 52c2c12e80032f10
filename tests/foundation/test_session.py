"""One plugin session per process: one manager per run, names served by plugins checked at load, the cached index
that refuses a bad recipe before any plugin is imported, legacy keys, and the layering rules of the tree."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from visplay.config import RecipeError, load_recipe
from visplay.session import PluginSession, read_index

ROOT = Path(__file__).resolve().parents[2]
FAST_TINY = ["iterations=1", "questioner.steps=1", "reasoner.steps=1", "reasoner.set_images=4",
             "questioner.images_per_step=2", "reasoner.questions_per_step=2", "data.num_images=8",
             "plugins.games.cold_start_steps=1", "plugins.games.cold_start_reasoner_steps=1",
             "plugins.games.held_out=2", "plugins.games.cold_start_images=4", "plugins.games.cold_start_cache=false"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "VISPLAY_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1", **extra}


# --- names served by plugins ---------------------------------------------------------------------------------


@pytest.mark.parametrize("override, key, hint", [
    ("model.backend=tinyy", "model.backend", "did you mean 'tiny'"),
    ("data.source=game", "data.source", "did you mean 'games'"),
    ("sampler.reasoner=hff", "sampler.reasoner", "did you mean 'hf'"),
    ("optimizer.name=adam", "optimizer.name", "served: grpo"),
    ("eval.judge=locall", "eval.judge", "did you mean 'local'"),
])
def test_a_name_no_plugin_serves_is_refused_at_load(override, key, hint):
    with pytest.raises(RecipeError) as err:
        load_recipe("tiny", [override])
    assert f"key {key!r}" in str(err.value) and hint in str(err.value)


def test_a_serving_plugin_that_declares_no_names_leaves_its_kind_unchecked():
    """A third-party sampler written before ``visplay_names`` existed is never refused: the kind is unchecked."""
    from visplay.hookspecs import hookimpl

    class OldSampler:
        @hookimpl
        def visplay_make_sampler(self, ctx, role, policy):
            return None

    session = PluginSession(extra=(OldSampler(),))
    assert "sampler" in session.declared.unchecked_kinds
    assert session.load_recipe("tiny", ["sampler.reasoner=anything"]).sampler.reasoner == "anything"


FIRST_PARTY = {"algorithm", "eval", "games", "grpo", "images", "metrics", "models", "vllm"}


def test_a_reward_weight_must_name_a_component_some_plugin_returns():
    with pytest.raises(RecipeError, match=r"plugins\.algorithm\.reward\.weights\.gold_acuracy.*did you mean "
                                          r"'gold_accuracy'"):
        load_recipe("tiny", ["plugins.algorithm.reward.weights={gold_acuracy: 1.0}"], only=FIRST_PARTY)
    cfg = load_recipe("tiny", ["plugins.algorithm.reward.weights={game_points: 0.5}"], only=FIRST_PARTY)
    assert dict(cfg.plugins.algorithm.reward.weights) == {"game_points": 0.5}


# --- legacy keys -------------------------------------------------------------------------------------------


def test_keys_that_moved_into_plugins_still_load_with_one_warning(caplog):
    cfg = load_recipe("tiny", ["reward.combine=weighted", "reasoner.filter.band=[0.1,0.9]", "optimizer.lr=0.5",
                               "data.size=96"])
    assert cfg.plugins.algorithm.reward.combine == "weighted"
    assert list(cfg.plugins.algorithm.filter.band) == [0.1, 0.9]
    assert cfg.plugins.grpo.lr == 0.5
    assert cfg.plugins.images.size == 96 and cfg.plugins.games.image_size == 96  # both read the old data.size
    assert "reward" not in cfg and "filter" not in cfg.reasoner and "lr" not in cfg.optimizer
    assert "moved into the plugin sections" in caplog.text


def test_an_old_key_and_its_new_name_both_given_is_an_error():
    with pytest.raises(RecipeError, match=r"'optimizer.lr' is the old name of 'plugins.grpo.lr'.*keep only"):
        load_recipe("tiny", ["optimizer.lr=0.1", "plugins.grpo.lr=0.2"])


# --- one session, one manager ----------------------------------------------------------------------------------


def test_a_run_builds_one_plugin_manager(tmp_path, monkeypatch):
    """``visplay run`` through the CLI (recipe load, preflight, the run, its report) builds one manager."""
    from visplay import cli, plugins

    monkeypatch.setenv("VISPLAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    before = plugins.MANAGERS_BUILT
    assert cli.main(["run", "tiny", "-q", "name=one", *FAST_TINY]) == 0
    assert plugins.MANAGERS_BUILT - before == 1
    assert (tmp_path / "runs" / "one" / "report" / "index.html").is_file()


def test_a_refused_recipe_imports_no_plugin_once_the_index_is_fresh(tmp_path):
    """With the index written by an earlier command, a mistyped core key, a mistyped plugin key and an unknown
    sampler name are refused by the light check: exit 2 and no plugin module imported."""
    env = _env(tmp_path)
    warm = subprocess.run([sys.executable, "-m", "visplay.cli", "recipe", "tiny"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert warm.returncode == 0, warm.stderr
    assert (tmp_path / "cache" / "plugin-index.json").is_file()
    probe = textwrap.dedent("""
        import sys
        from visplay.cli import main
        code = main(["recipe", "tiny", sys.argv[1]])
        print(code, sorted(m for m in sys.modules if m.startswith("visplay_")))
    """)
    for override, message in [("questioner.stepz=1", "did you mean 'questioner.steps'"),
                              ("plugins.grpo.lrr=1", "did you mean 'plugins.grpo.lr'"),
                              ("sampler.reasoner=vlm", "did you mean 'vllm'")]:
        proc = subprocess.run([sys.executable, "-c", probe, override], capture_output=True, text=True, env=env,
                              cwd=tmp_path)
        assert proc.stdout.strip() == "2 []", (override, proc.stdout, proc.stderr)
        assert message in proc.stderr


def test_the_index_is_rebuilt_when_a_plugin_changes(tmp_path, monkeypatch):
    from visplay import session as session_module

    monkeypatch.setenv("VISPLAY_CACHE", str(tmp_path))
    PluginSession().declared  # noqa: B018 - writes the index
    key = session_module.fingerprint(None)
    assert read_index(key) is not None
    monkeypatch.setattr(session_module, "INDEX_FORMAT", session_module.INDEX_FORMAT + 1)  # as a changed plugin does
    assert read_index(session_module.fingerprint(None)) is None


# --- a third-party sampler through an entry point -----------------------------------------------------------

SAMPLER_PLUGIN = '''
"""A third party's sampler: the models plugin's HF sampler, counting the prompts it is asked for."""
from pathlib import Path
from visplay.api import hookimpl

COUNT = Path(__file__).with_name("calls.txt")


class Counting:
    def __init__(self, inner):
        self.inner = inner

    def sample(self, prompts, params):
        COUNT.write_text(str(int(COUNT.read_text() or 0) + len(prompts)) if COUNT.exists() else str(len(prompts)))
        return self.inner.sample(prompts, params)


@hookimpl
def visplay_names():
    return {"sampler": ["counting"]}


@hookimpl
def visplay_make_sampler(ctx, role, policy):
    if ctx.recipe.sampler.get(role) != "counting":
        return None
    return Counting(policy.sampler())
'''


def _install_entry_point(root: Path) -> None:
    """A distribution on sys.path whose entry point registers ``counting_sampler`` in group ``visplay``."""
    (root / "counting_sampler.py").write_text(SAMPLER_PLUGIN)
    dist = root / "counting_sampler-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: counting-sampler\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[visplay]\ncounting = counting_sampler\n")


def test_a_third_party_sampler_named_in_a_recipe_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_entry_point(site)
    env = _env(tmp_path, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    typo = subprocess.run([sys.executable, "-m", "visplay.cli", "recipe", "tiny", "sampler.reasoner=countin"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert typo.returncode == 2 and "did you mean 'counting'" in typo.stderr, typo.stderr
    # gold questions make the reasoner's set (an untrained questioner rarely writes a valid one), so it rolls out
    run = subprocess.run([sys.executable, "-m", "visplay.cli", "run", "tiny", "-q", "name=third", *FAST_TINY,
                          "plugins.games.gold_reward=true", "sampler.reasoner=counting"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert int((site / "calls.txt").read_text()) >= 2  # the reasoner's rollouts went through it
    from visplay.log.runlog import RunLog

    with RunLog(tmp_path / "runs" / "third" / "run.db", readonly=True) as log:
        plugins = {row["name"]: row["distribution"] for row in log.rows("plugins")}
    assert plugins["counting"] == "counting-sampler"


# --- the layers point one way ----------------------------------------------------------------------------------


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
    return out


def test_log_and_report_import_no_loop_internals():
    for room in ("log", "report"):
        for path in (ROOT / "visplay" / room).glob("*.py"):
            bad = [m for m in _imports(path) if m.startswith("visplay.loop")]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_plugins_import_the_core_through_its_public_api_and_each_other_through_theirs():
    plugin_names = {p.name for p in (ROOT / "plugins").iterdir() if p.name.startswith("visplay_")}
    for path in (ROOT / "plugins").rglob("*.py"):
        if "tests" in path.parts:
            continue
        own = next(part for part in path.relative_to(ROOT / "plugins").parts)
        for module in _imports(path):
            top = module.split(".")[0]
            if top == "visplay":
                assert module in ("visplay", "visplay.api"), f"{path.relative_to(ROOT)} imports {module}"
            elif top in plugin_names and top != own:
                assert module == f"{top}.api", f"{path.relative_to(ROOT)} imports {module} (use {top}.api)"


def test_the_core_imports_no_plugin_and_tests_call_hooks_through_ctx_hooks():
    plugin_names = {p.name for p in (ROOT / "plugins").iterdir() if p.name.startswith("visplay_")}
    for path in (ROOT / "visplay").rglob("*.py"):
        bad = [m for m in _imports(path) if m.split(".")[0] in plugin_names]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    raw = [p for p in (ROOT / "tests").rglob("*.py") if p.name != "test_session.py"
           and ('ctx.call("' in p.read_text() or '.call("visplay_' in p.read_text())]
    assert not raw, f"raw hook calls (use ctx.hooks.<name>): {raw}"


def test_the_filter_band_lives_in_one_plugin_file():
    """Defined, defaulted and validated in visplay_algorithm/options.py; the core never names it (visplay.testing's
    stand-in filter has a band of its own, ``plugins.standin.band``)."""
    core = [p for p in (ROOT / "visplay").rglob("*.py") if "filter.band" in p.read_text() or "reasoner.filter"
            in p.read_text() or "band: list" in p.read_text() and p.name != "testing.py"]
    assert not core, [str(p.relative_to(ROOT)) for p in core]
    defining = [p for p in (ROOT / "plugins").rglob("*.py") if "band: list[float]" in p.read_text()]
    assert [p.relative_to(ROOT).as_posix() for p in defining] == ["plugins/visplay_algorithm/options.py"]


def test_the_index_lists_every_declared_section_and_name(tmp_path, monkeypatch):
    monkeypatch.setenv("VISPLAY_CACHE", str(tmp_path))
    declared = PluginSession().declared
    data = json.loads((tmp_path / "plugin-index.json").read_text())["declared"]
    assert set(data["keys"]) == set(declared.sections) >= {"algorithm", "grpo", "images", "models", "vllm"}
    assert "plugins.algorithm.filter.band" in data["keys"]["algorithm"]
    assert data["names"]["sampler"] == ["hf", "vllm"]
    assert data["legacy"]["optimizer.lr"] == [["plugins.grpo.lr", None]]
    assert data["legacy"]["data.size"] == [["plugins.games.image_size", {"data.source": "games"}],
                                          ["plugins.images.size", None]]
