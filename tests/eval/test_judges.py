"""The judges behind visplay_judge: rule, an OpenAI-compatible endpoint on 127.0.0.1, and a local model."""

from __future__ import annotations

import pytest
import visplay_eval.plugin as eval_plugin
from support.eval import JudgeServer, ScriptedSampler, StandInModels
from visplay_eval.judges import JUDGE_TEMPLATE, parse_verdict

from visplay.config import load_recipe
from visplay.context import RunContext
from visplay.plugins import PluginError, get_plugin_manager

ITEMS = [
    {"key": "k0", "benchmark": "mm-vet", "question": "Colour?", "answer": "red", "kind": "open",
     "response": "It is \\boxed{red}"},
    {"key": "k1", "benchmark": "mm-vet", "question": "Count?", "answer": "3", "kind": "open",
     "response": "maybe four"},
]


def _ctx(tmp_path, overrides=(), extra=()):
    pm = get_plugin_manager(autoload=False, extra=(eval_plugin, *extra))
    return RunContext(recipe=load_recipe("tiny", list(overrides)), pm=pm, run_dir=tmp_path, phase="eval")


def test_rule_judge_through_the_hook(tmp_path):
    verdicts = _ctx(tmp_path).hooks.judge(name="rule", items=ITEMS)
    assert [(v["correct"], v["reason"], v["prompt"]) for v in verdicts] == [(True, "match", None),
                                                                          (False, "no_boxed_answer", None)]
    assert _ctx(tmp_path).hooks.judge(name="someone-else", items=ITEMS) is None


def test_endpoint_judge_on_loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "s3cret")
    with JudgeServer() as server:
        ctx = _ctx(tmp_path, [f"plugins.eval.judge_url={server.url}", "plugins.eval.judge_model_name=glm-test",
                              "plugins.eval.api_key_env=TEST_JUDGE_KEY"])
        verdicts = ctx.hooks.judge(name="endpoint", items=ITEMS)
    assert [v["correct"] for v in verdicts] == [True, False]
    assert [v["verdict"] for v in verdicts] == ["yes", "No."]
    assert [v["reason"] for v in verdicts] == ["judged_correct", "judged_wrong"]
    assert JUDGE_TEMPLATE.format(question="Colour?", answer="red", response="red") in verdicts[0]["prompt"]
    assert "Model answer: maybe four" in verdicts[1]["prompt"]  # no box: the judge sees the response's end
    path, headers, body = server.requests[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == "Bearer s3cret"
    assert (body["model"], body["temperature"], body["messages"][0]["role"]) == ("glm-test", 0.0, "system")


@pytest.mark.parametrize("mode, message", [("error", "HTTP 500: boom"), ("garbage", "reply is not JSON"),
                                           ("slow", "timed out after 0.3 s")])
def test_endpoint_errors_name_the_url(tmp_path, mode, message):
    with JudgeServer(mode) as server:
        ctx = _ctx(tmp_path, [f"plugins.eval.judge_url={server.url}", "plugins.eval.timeout_s=0.3"])
        with pytest.raises(PluginError) as err:
            ctx.hooks.judge(name="endpoint", items=ITEMS[:1])
    assert f"{server.url}/chat/completions" in str(err.value) and message in str(err.value)


def test_endpoint_unconfigured_or_unreachable(tmp_path):
    with pytest.raises(PluginError, match="needs plugins.eval.judge_url .* nothing contacted"):
        _ctx(tmp_path).hooks.judge(name="endpoint", items=ITEMS)
    with pytest.raises(PluginError, match="must start with http"):
        _ctx(tmp_path, ["plugins.eval.judge_url=file:///etc/passwd"]).hooks.judge(name="endpoint", items=ITEMS)
    closed = JudgeServer()  # bound, never served or accepted: connection refused or timeout
    url = closed.url
    closed.httpd.server_close()
    ctx = _ctx(tmp_path, [f"plugins.eval.judge_url={url}", "plugins.eval.timeout_s=0.5"])
    with pytest.raises(PluginError, match="unreachable or timed out"):
        ctx.hooks.judge(name="endpoint", items=ITEMS[:1])


def test_local_judge_with_stand_in_model_is_greedy_and_text_only(tmp_path):
    sampler = ScriptedSampler(responses={}, default="yes")
    standin = StandInModels(sampler)
    ctx = _ctx(tmp_path, [f"plugins.eval.judge_model={tmp_path}"], extra=(standin,))
    verdicts = ctx.hooks.judge(name="local", items=ITEMS)
    assert [v["correct"] for v in verdicts] == [True, True] and verdicts[0]["verdict"] == "yes"
    assert standin.loaded == [("reasoner", None, "hf")]
    prompts, params = sampler.calls[0]
    assert all(p.image is None and p.system for p in prompts)
    assert {(p.temperature, p.n) for p in params} == {(0.0, 1)}
    with pytest.raises(PluginError, match="needs plugins.eval.judge_model"):
        _ctx(tmp_path, extra=(standin,)).hooks.judge(name="local", items=ITEMS)


@pytest.mark.parametrize("text, parsed", [("yes", True), ("Correct.", True), ("1", True), ("No", False),
                                          ("incorrect", False), ("0", False), ("perhaps", None), ("", None),
                                          (None, None)])
def test_parse_verdict(text, parsed):
    assert parse_verdict(text) is parsed


def test_local_judge_with_the_tiny_model(tmp_path):
    """The real HF backend: a tiny model folder as judge, greedy, deterministic, prompts and verdicts returned."""
    tiny = pytest.importorskip("visplay_models.tiny")
    import visplay_models.plugin as models_plugin

    recipe = load_recipe("tiny")
    folder = tiny.build_tiny_model(recipe.plugins.models.tiny, seed=0)
    pm = get_plugin_manager(autoload=False, extra=(eval_plugin, models_plugin))
    ctx = RunContext(recipe=load_recipe("tiny", [f"plugins.eval.judge_model={folder}"]), pm=pm, run_dir=tmp_path)
    first = ctx.hooks.judge(name="local", items=ITEMS)
    from visplay_eval import judges

    judges._LOCAL_SAMPLERS.clear()  # a fresh load must give the same verdicts
    second = ctx.hooks.judge(name="local", items=ITEMS)
    assert [v["verdict"] for v in first] == [v["verdict"] for v in second]
    assert all(isinstance(v["verdict"], str) and v["prompt"].startswith("[system]") for v in first)
    assert all(v["correct"] == (parse_verdict(v["verdict"]) is True) for v in first)


def test_rule_judge_uses_the_algorithm_answer_key(tmp_path):
    """Open answers are equal when the algorithm plugin's visplay_answer_key says so (1/2 == 0.5)."""
    algorithm = pytest.importorskip("visplay_algorithm.plugin")
    item = {"key": "k", "benchmark": "mathverse", "question": "x?", "answer": "0.5", "kind": "open",
            "response": "\\boxed{\\frac{1}{2}}"}
    assert _ctx(tmp_path).hooks.judge(name="rule", items=[item])[0]["correct"] is False  # fallback key
    with_key = _ctx(tmp_path, extra=(algorithm,)).hooks.judge(name="rule", items=[item])
    assert with_key[0]["correct"] is True
