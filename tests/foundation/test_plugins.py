"""The plugin host: entry-point discovery, validation, tracing, error attribution."""

from __future__ import annotations

import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest

from visplay.hookspecs import hookimpl
from visplay.plugins import PluginError, env_flag, get_plugin_manager, hook_names, hook_table, plugin_infos
from visplay.testing import make_context

PRODUCT_HOOKS = [
    "visplay_generate_questions", "visplay_sample_answers", "visplay_reward_components",
    "visplay_filter_questions", "visplay_make_optimizer",
]


def test_first_party_plugins_come_from_entry_points():
    pm = get_plugin_manager()
    infos = {i.name: i for i in plugin_infos(pm)}
    for name in ("algorithm", "models", "grpo", "images", "games", "eval", "vllm"):
        assert name in infos, f"first-party plugin {name} not loaded through the entry point"
        assert infos[name].distribution == "visplay"


def test_third_party_package_is_discovered_and_fills_reward_hooks():
    pm = get_plugin_manager()
    infos = {i.name: i for i in plugin_infos(pm)}
    assert "length_reward" in infos, "install it: pip install ./plugins/examples/visplay-length-reward"
    info = infos["length_reward"]
    assert info.distribution == "visplay-length-reward"
    assert info.version == "0.4.0"
    assert set(info.hooks) == {"visplay_reward_components", "visplay_combine_rewards", "visplay_recipe_sections",
                               "visplay_names"}
    assert "length_reward" in hook_table(pm)["visplay_reward_components"]


def test_visplay_plugins_cli_lists_every_hook_and_the_third_party():
    out = subprocess.run([sys.executable, "-m", "visplay.cli", "plugins"], capture_output=True, text=True,
                         check=True).stdout
    for hook in hook_names():
        assert hook in out
    assert "length_reward visplay-length-reward 0.4.0" in " ".join(out.split())


def test_misspelled_hookimpl_fails_loudly(no_autoload):
    class Typo:
        @hookimpl
        def visplay_reward_component(self, ctx, role, items):  # missing "s"
            return {}

    with pytest.raises(PluginError, match="visplay_reward_component"):
        get_plugin_manager(extra=(Typo(),))


def test_wrong_hook_arguments_fail_at_registration(no_autoload):
    class BadArgs:
        @hookimpl
        def visplay_answer_key(self, ctx, answer, extra):
            return answer

    with pytest.raises(Exception, match="extra"):
        get_plugin_manager(extra=(BadArgs(),))


def test_autoload_switch_and_allow_list(monkeypatch):
    monkeypatch.setenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert [i.name for i in plugin_infos(get_plugin_manager())] == []
    monkeypatch.delenv("VISPLAY_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("VISPLAY_PLUGINS", "length_reward")
    assert [i.name for i in plugin_infos(get_plugin_manager())] == ["length_reward"]


class _Key:
    @hookimpl
    def visplay_answer_key(self, ctx, answer):
        return answer.upper()


@pytest.mark.parametrize("value, traced", [("1", True), ("yes", True), ("ON", True), ("0", False), ("", False),
                                           ("no", False), ("off", False)])
def test_trace_switch_logs_hook_calls_by_the_one_truthiness_rule(monkeypatch, caplog, no_autoload, value, traced):
    """VISPLAY_TRACE_HOOKS=0 is off (it used to half-enable tracing), like every visplay switch (env_flag)."""
    monkeypatch.setenv("VISPLAY_TRACE_HOOKS", value)
    ctx = make_context(plugins=[_Key()])
    with caplog.at_level(logging.WARNING, logger="visplay.hooks"):
        assert ctx.hooks.answer_key("b") == "B"
    assert ("visplay_answer_key <- " in caplog.text and "'B'" in caplog.text) == traced
    assert env_flag("VISPLAY_TRACE_HOOKS") == traced


def test_verbose_debug_logging_traces_hook_calls_too(caplog, no_autoload):
    ctx = make_context(plugins=[_Key()])
    with caplog.at_level(logging.DEBUG, logger="visplay.hooks"):
        ctx.hooks.answer_key("b")
    assert "visplay_answer_key <- " in caplog.text


def test_a_crashing_plugin_is_named_with_its_hook(no_autoload):
    class Fine:
        @hookimpl
        def visplay_reward_components(self, ctx, role, items):
            return {"fine": [1.0] * len(items)}

    class Broken:
        @hookimpl
        def visplay_reward_components(self, ctx, role, items):
            raise ZeroDivisionError("boom")

    ctx = make_context(plugins=[Fine(), Broken()])
    with pytest.raises(PluginError) as err:
        ctx.hooks.reward_components("reasoner", [SimpleNamespace()])
    message = str(err.value)
    assert "Broken" in message and "visplay_reward_components" in message and "boom" in message


def test_product_hook_points_exist_and_are_documented():
    from visplay import hookspecs

    for name in PRODUCT_HOOKS:
        spec = getattr(hookspecs, name)
        assert spec.__doc__ and len(spec.__doc__.strip()) > 40
        assert ":return:" in spec.__doc__ or "Returns" in spec.__doc__ or "return" in spec.__doc__


def test_plugin_author_docs_carry_the_current_hook_reference():
    from pathlib import Path

    from visplay.plugins import render_plugin_docs

    text = (Path(__file__).parent.parent.parent / "docs" / "plugins.md").read_text()
    missing = [h for h in hook_names() if f"### `{h}`" not in text]
    assert not missing, f"hooks missing from docs/plugins.md: {missing}"
    assert render_plugin_docs(text) == text, "docs/plugins.md is stale: run `python -m visplay.plugins`"
