"""The judges behind visplay_judge: rule, an OpenAI-compatible endpoint on 127.0.0.1, and a local model."""

from __future__ import annotations

import json

import pytest
import visplay_eval.plugin as eval_plugin
from support.eval import JudgeServer, ScriptedSampler, StandInModels
from visplay_eval.judges import JUDGE_TEMPLATE, parse_verdict

from visplay.config import load_recipe
from visplay.context import RunContext
from visplay.log.runlog import RunLog
from visplay.plugins import PluginError, get_plugin_manager

ITEMS = [
    {"key": "k0", "benchmark": "mm-vet", "question": "Colour?", "answer": "red", "kind": "open",
     "response": "It is \\boxed{red}"},
    {"key": "k1", "benchmark": "mm-vet", "question": "Count?", "answer": "3", "kind": "open",
     "response": "maybe four"},
]


FAST_RETRY = ["plugins.eval.retry_backoff_s=0.01", "plugins.eval.retry_backoff_max_s=0.05"]


def _ctx(tmp_path, overrides=(), extra=(), log=None):
    pm = get_plugin_manager(autoload=False, extra=(eval_plugin, *extra))
    return RunContext(recipe=load_recipe("tiny", list(overrides)), pm=pm, run_dir=tmp_path, phase="eval", log=log)


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
    assert (body["top_p"], body["seed"]) == (1.0, 0)  # the defaults: greedy, seed 0


@pytest.mark.parametrize("mode, message, sent", [("error", "HTTP 500: boom", 2), ("garbage", "reply is not JSON", 1),
                                                 ("slow", "timed out after 0.3 s", 2),
                                                 ("bad_request", "HTTP 400: boom", 1)])
def test_endpoint_errors_name_the_url(tmp_path, mode, message, sent):
    """5xx and timeouts are retried up to max_attempts; a 400 or a reply that is not JSON fails at once."""
    with JudgeServer(mode) as server:
        ctx = _ctx(tmp_path, [f"plugins.eval.judge_url={server.url}", "plugins.eval.timeout_s=0.3",
                              "plugins.eval.max_attempts=2", *FAST_RETRY])
        with pytest.raises(PluginError) as err:
            ctx.hooks.judge(name="endpoint", items=ITEMS[:1])
    assert f"{server.url}/chat/completions" in str(err.value) and message in str(err.value)
    assert len(server.requests) == sent and f"({sent} attempt(s);" in str(err.value)


def test_endpoint_retries_keep_the_sampling_settings_and_record_each_outcome(tmp_path):
    """Each prompt fails three times (429, 503, a timeout) before its answer: every attempt sends the same body,
    with the configured temperature/top_p/seed, and each call's outcome is stored with its verdict."""
    settings = ["plugins.eval.judge_temperature=0.6", "plugins.eval.judge_top_p=0.9", "plugins.eval.judge_seed=7",
                "plugins.eval.timeout_s=0.5", "plugins.eval.max_attempts=4", *FAST_RETRY]
    with JudgeServer(failures=[429, 503, "slow"]) as server, RunLog(tmp_path / "j.db", create=True) as log:
        ctx = _ctx(tmp_path, [f"plugins.eval.judge_url={server.url}", *settings], log=log)
        verdicts = ctx.hooks.judge(name="endpoint", items=ITEMS)
        rows = log.rows("judge_verdicts")
    assert [(v["correct"], v["verdict"]) for v in verdicts] == [(True, "yes"), (False, "No.")]
    bodies = [body for _, _, body in server.requests]
    assert len(bodies) == 8  # 2 prompts x (3 failures + 1 answer)
    for user in {b["messages"][-1]["content"] for b in bodies}:
        same = [b for b in bodies if b["messages"][-1]["content"] == user]
        assert len(same) == 4 and all(b == same[0] for b in same)
    assert {(b["model"], b["temperature"], b["top_p"], b["seed"], b["max_tokens"]) for b in bodies} == \
        {("judge", 0.6, 0.9, 7, 8)}
    assert len(rows) == 2 and {r["prompt"] for r in rows} == {v["prompt"] for v in verdicts}
    for row in rows:
        errors = json.loads(row["errors"])
        assert (row["status"], row["attempts"], row["http_status"], row["served_model"]) == \
            ("ok", 4, 200, "served-judge")
        assert errors[:2] == ["HTTP 429: scripted 429", "HTTP 503: scripted 503"]
        assert len(errors) == 3 and "timed out after 0.5 s" in errors[2]
        assert row["latency_s"] >= 0.5 and row["judge_id"] == verdicts[0]["judge_id"]
        assert json.loads(row["identity"])["temperature"] == 0.6


@pytest.mark.parametrize("concurrency", [1, 3])
def test_endpoint_concurrency_is_bounded(tmp_path, concurrency):
    items = [dict(ITEMS[0], key=f"k{i}", answer=f"a{i}") for i in range(6)]
    with JudgeServer(delay=0.2) as server:
        ctx = _ctx(tmp_path, [f"plugins.eval.judge_url={server.url}", f"plugins.eval.concurrency={concurrency}"])
        verdicts = ctx.hooks.judge(name="endpoint", items=items)
    assert len(server.requests) == 6 and [v["verdict"] for v in verdicts] == ["No."] * 6
    assert server.max_in_flight == concurrency


def test_endpoint_verdicts_on_file_are_not_asked_again(tmp_path):
    """Keyed by (judge identity, exact prompt): the same judge asks nothing the second time; another sampling
    setting is another judge; without a run log every call is made."""
    with JudgeServer() as server, RunLog(tmp_path / "j.db", create=True) as log:
        url = f"plugins.eval.judge_url={server.url}"
        first = _ctx(tmp_path, [url], log=log).hooks.judge(name="endpoint", items=ITEMS)
        again = _ctx(tmp_path, [url], log=log).hooks.judge(name="endpoint", items=ITEMS)
        assert len(server.requests) == 2 and again == first
        hotter = _ctx(tmp_path, [url, "plugins.eval.judge_temperature=0.6"], log=log)
        assert hotter.hooks.judge(name="endpoint", items=ITEMS)[0]["judge_id"] != first[0]["judge_id"]
        assert len(server.requests) == 4 and log.count("judge_verdicts") == 4
        _ctx(tmp_path, [url]).hooks.judge(name="endpoint", items=ITEMS)
        assert len(server.requests) == 6


def test_failed_endpoint_calls_are_kept_and_asked_again(tmp_path):
    with RunLog(tmp_path / "j.db", create=True) as log, JudgeServer("error") as server:
        ctx = _ctx(tmp_path, [f"plugins.eval.judge_url={server.url}", "plugins.eval.max_attempts=2", *FAST_RETRY],
                   log=log)
        with pytest.raises(PluginError, match="HTTP 500"):
            ctx.hooks.judge(name="endpoint", items=ITEMS[:1])
        (row,) = log.rows("judge_verdicts")
        assert (row["status"], row["attempts"], row["http_status"], row["reply"]) == ("failed", 2, 500, None)
        assert json.loads(row["errors"]) == ["HTTP 500: boom"] * 2
        server.mode = "ok"  # the endpoint recovers: the failed call is asked again, its row replaced
        assert ctx.hooks.judge(name="endpoint", items=ITEMS[:1])[0]["verdict"] == "yes"
        (row,) = log.rows("judge_verdicts")
        assert (row["status"], row["attempts"], row["reply"], len(server.requests)) == ("ok", 1, "yes", 3)


def test_local_verdicts_are_keyed_by_the_model_files(tmp_path):
    """The local judge loads no model when every prompt has a verdict on file; other weights are another judge."""
    from visplay_eval import judges

    folder = tmp_path / "judge"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights v1")
    sampler = ScriptedSampler(responses={}, default="yes")
    standin = StandInModels(sampler)
    with RunLog(tmp_path / "j.db", create=True) as log:
        ctx = _ctx(tmp_path, [f"plugins.eval.judge_model={folder}"], extra=(standin,), log=log)
        first = ctx.hooks.judge(name="local", items=ITEMS)
        judges._LOCAL_SAMPLERS.clear()
        again = ctx.hooks.judge(name="local", items=ITEMS)
        assert again == first and len(sampler.calls) == 1 and len(standin.loaded) == 1
        (folder / "model.safetensors").write_bytes(b"weights v2")
        changed = ctx.hooks.judge(name="local", items=ITEMS)
        assert len(sampler.calls) == 2 and changed[0]["judge_id"] != first[0]["judge_id"]
        identities = {json.loads(r["identity"])["sha256"] for r in log.rows("judge_verdicts")}
    assert len(identities) == 2 and all(len(h) == 64 for h in identities)
    judges._LOCAL_SAMPLERS.clear()


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


def test_endpoint_backoff_doubles_is_capped_and_honours_retry_after(tmp_path):
    from visplay_eval.endpoint import EndpointClient

    waits: list[float] = []
    with JudgeServer(failures=[503, 500, 429]) as server:
        client = EndpointClient(f"{server.url}/chat/completions", 5.0, max_attempts=4, backoff_s=0.5,
                                backoff_max_s=30.0, sleep=waits.append)
        body = {"model": "m", "temperature": 0.0, "messages": [
            {"role": "user", "content": "Reference answer: x\nModel answer: x\n"}]}
        outcome = client.call(body)
    assert waits == [0.5, 1.0, 2.0] and (outcome.status, outcome.attempts, outcome.reply) == ("ok", 4, "yes")
    assert [client._wait(k, None) for k in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert (client._wait(1, 3.0), client._wait(1, 45.0)) == (3.0, 30.0)  # Retry-After, within the cap
