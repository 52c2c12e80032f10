"""`visplay eval` end to end with a scripted stand-in model: generation, rule judging, logging, run targets."""

from __future__ import annotations

import json

import pytest
from support.eval import (
    EXPECTED_ACCURACY,
    RESPONSES,
    StandInModels,
    build_run,
    patch_plugin_manager,
    write_benchmarks,
)

import visplay.plugins
from visplay.cli import main
from visplay.log.runlog import RunLog

ALL = "mmmu,mm-vet,realworldqa,visnumbench,mathverse,math-vision,hallusionbench,mmstar"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_benchmarks(tmp_path_factory.mktemp("bench"))


@pytest.fixture
def models(monkeypatch):
    """The stand-in models plugin plus the real eval plugin, in place of the entry-point plugins."""
    standin = StandInModels()
    patch_plugin_manager(monkeypatch, standin)
    return standin


def test_eval_model_folder_all_benchmarks(tmp_path, data_dir, models, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "MyModel"
    model_dir.mkdir()
    assert main(["eval", str(model_dir), "--benchmarks", ALL, "--data", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "MyModel judged by rule" in out and "HallusionBench" in out
    assert models.loaded == [("reasoner", None, "hf")]
    with RunLog(tmp_path / "eval.db", readonly=True) as log:
        scores = {r["benchmark"]: r for r in log.rows("eval_scores")}
        items = log.rows("eval_items", order_by="key")
    assert {b: s["accuracy"] for b, s in scores.items()} == EXPECTED_ACCURACY
    assert all(s["eval_id"] == "MyModel/rule" and s["iteration"] is None for s in scores.values())
    by_tag = {r["question"].split("[q:")[1].split("]")[0]: r for r in items}
    assert {tag: bool(r["correct"]) for tag, r in by_tag.items()} == {t: v[1] for t, v in RESPONSES.items()}
    assert by_tag["num1"]["reason"] == "no_boxed_answer" and by_tag["rw0"]["reason"] == "no_boxed_answer"
    assert by_tag["hal1"]["reason"] == "not_yes_no" and by_tag["star0"]["extracted"] == "fish"
    assert scores["visnumbench"]["no_answer"] == 1
    assert "\\boxed{}" in by_tag["mmmu0"]["prompt_user"] and "B. square" in by_tag["mmmu0"]["prompt_user"]
    assert json.loads(by_tag["mmmu0"]["letters"]) == ["A", "B", "C", "D"]


def test_eval_is_greedy_seeded_and_batched(tmp_path, data_dir, models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["eval", str(tmp_path), "eval.batch_size=1", "eval.max_new_tokens=17", "--benchmarks",
            "mmmu,hallusionbench", "--data", str(data_dir)]
    assert main(args) == 0
    calls = models.sampler.calls
    assert len(calls) == 4 and all(len(prompts) == 1 for prompts, _ in calls)
    params = [p for _, ps in calls for p in ps]
    assert {(p.temperature, p.n, p.max_new_tokens) for p in params} == {(0.0, 1, 17)}
    images = [pr.image for prompts, _ in calls for pr in prompts]
    assert all(im is not None and im.image.size == (64, 64) for im in images)  # tiny recipe: data.size 64
    seeds = [p.seed for p in params]
    models.sampler.calls.clear()
    assert main(args) == 0
    assert [p.seed for _, ps in models.sampler.calls for p in ps] == seeds and len(set(seeds)) == 4


def test_eval_run_dir_uses_latest_reasoner_checkpoint(tmp_path, data_dir, models, capsys):
    db = build_run(tmp_path / "run", iterations=2)
    assert main(["eval", str(tmp_path / "run"), "--benchmarks", "mmstar", "--data", str(data_dir)]) == 0
    assert models.loaded[-1] == ("reasoner", str(tmp_path / "run" / "checkpoints" / "reasoner_v2"), "tiny")
    assert main(["eval", str(db), "--benchmarks", "mmstar", "--data", str(data_dir), "--iteration", "0"]) == 0
    assert models.loaded[-1] == ("reasoner", None, "tiny")
    with RunLog(db, readonly=True) as log:
        rows = {r["eval_id"]: r for r in log.rows("eval_scores")}
    assert set(rows) == {"iter2/rule", "base/rule"}
    assert (rows["iter2/rule"]["iteration"], rows["iter2/rule"]["checkpoint"]) == (2, "reasoner_v2")
    assert main(["eval", str(db), "--benchmarks", "mmstar", "--data", str(data_dir), "--iteration", "7"]) == 2
    assert "no reasoner checkpoint for iteration 7" in capsys.readouterr().err


def test_bad_benchmark_file_fails_before_loading_a_model(tmp_path, models, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mmstar.jsonl").write_text('{"problem": "q", "image": "!!notbase64"}\n')
    assert main(["eval", str(tmp_path), "--benchmarks", "mmstar", "--data", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "mmstar.jsonl: missing column 'answer'" in err and models.loaded == []
    assert main(["eval", str(tmp_path / "nope"), "--benchmarks", "mmstar", "--data", "x"]) == 2
    assert "neither a model folder nor a run directory" in capsys.readouterr().err


def test_unknown_judge_is_named(tmp_path, data_dir, models, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(tmp_path), "--benchmarks", "mmstar", "--data", str(data_dir),
                 "--judge", "oracle"]) == 2
    assert "no plugin provides the judge 'oracle'" in capsys.readouterr().err


def test_rejudge_stored_responses_with_the_endpoint(tmp_path, data_dir, models, monkeypatch):
    from support.eval import JudgeServer

    from visplay.config import load_recipe
    from visplay.context import RunContext
    from visplay.eval.run import rejudge

    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(tmp_path), "--benchmarks", "mm-vet,mathverse", "--data", str(data_dir)]) == 0
    with JudgeServer() as server, RunLog(tmp_path / "eval.db") as log:
        ctx = RunContext(recipe=load_recipe("tiny", [f"plugins.eval.judge_url={server.url}"]),
                         pm=visplay.plugins.get_plugin_manager(), run_dir=tmp_path, log=log)
        label = f"{tmp_path.name}"
        scores = {s["benchmark"]: s for s in rejudge(ctx, f"{label}/rule", "endpoint")}
        items = log.rows("eval_items", "judge = ?", ["endpoint"])
    assert len(server.requests) == 3 and len(items) == 3
    # the server says yes only for an exact boxed match: 'Crimson' vs 'red<OR>crimson' and '3.50' vs '3.5' fail
    assert {b: s["correct"] for b, s in scores.items()} == {"mm-vet": 0, "mathverse": 0}
    assert all(r["judge_prompt"].startswith("[system]") and r["verdict"] == "No." for r in items)
    assert all(s["eval_id"] == f"{label}/endpoint" for s in scores.values())


def test_rejudging_with_the_local_judge_twice_asks_the_model_once(tmp_path, data_dir, models, monkeypatch):
    """Done means (issue 23): re-judging an evaluated run with the local judge (the real tiny model through the
    HF backend) twice gives identical verdicts, and the second time no model is loaded or called."""
    import hashlib

    tiny = pytest.importorskip("visplay_models.tiny")
    import visplay_eval.plugin as eval_plugin
    import visplay_models.plugin as models_plugin
    from visplay_eval import judges

    from visplay.config import load_recipe
    from visplay.context import RunContext
    from visplay.eval.run import rejudge

    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(tmp_path), "--benchmarks", "mm-vet,mathverse,mmstar", "--data", str(data_dir)]) == 0
    monkeypatch.undo()  # the stand-in generated the responses; the judge is the real models plugin
    folder = tiny.build_tiny_model(load_recipe("tiny").plugins.models.tiny, seed=0)
    loads, calls = [], []
    real_local_sampler = judges._local_sampler

    class Counting:
        def __init__(self, sampler):
            self.sampler = sampler

        def sample(self, prompts, params):
            calls.append(len(prompts))
            return self.sampler.sample(prompts, params)

    def counting_sampler(ctx, model_dir):
        loads.append(model_dir)
        return Counting(real_local_sampler(ctx, model_dir))

    monkeypatch.setattr(judges, "_local_sampler", counting_sampler)
    pm = visplay.plugins.get_plugin_manager(autoload=False, extra=(eval_plugin, models_plugin))
    with RunLog(tmp_path / "eval.db") as log:
        ctx = RunContext(recipe=load_recipe("tiny", [f"plugins.eval.judge_model={folder}"]), pm=pm,
                         run_dir=tmp_path, log=log)

        def rejudge_once():
            judges._LOCAL_SAMPLERS.clear()  # as a new process would start: no model loaded
            scores = rejudge(ctx, f"{tmp_path.name}/rule", "local")
            rows = log.rows("eval_items", "judge = ?", ["local"], order_by="key")
            return scores, [(r["key"], r["judge_prompt"], r["verdict"], r["correct"], r["reason"]) for r in rows]

        first = rejudge_once()
        first_calls, first_loads = list(calls), list(loads)
        second = rejudge_once()
        cached = log.rows("judge_verdicts")
    assert sum(first_calls) == 4 and len(first_loads) == 3  # 2 + 1 + 1 items: one model call per prompt
    assert calls == first_calls and loads == first_loads  # the second time: nothing loaded, nothing asked
    assert second == first and len(first[1]) == 4
    assert all(isinstance(v, str) and p.startswith("[system]") for _, p, v, _, _ in first[1])
    shas = {hashlib.sha256(prompt.encode()).hexdigest() for _, prompt, _, _, _ in first[1]}
    assert {r["prompt_sha"] for r in cached} == shas and {r["status"] for r in cached} == {"ok"}
    assert {r["reply"] for r in cached} == {v for _, _, v, _, _ in first[1]}
    judges._LOCAL_SAMPLERS.clear()


def test_rejudge_keeps_the_protocol_of_the_source(tmp_path, data_dir, models, monkeypatch):
    """Responses scored under ``released`` are re-judged under ``released``: its GLM prompt, its reply reading."""
    from support.eval import JudgeServer
    from visplay_eval.protocols.released import JUDGE_SYSTEM

    from visplay.config import load_recipe
    from visplay.context import RunContext
    from visplay.eval.run import rejudge

    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(tmp_path), "--benchmarks", "mmstar", "--data", str(data_dir),
                 "--protocol", "released"]) == 0
    with JudgeServer(mode="one") as server, RunLog(tmp_path / "eval.db") as log:
        ctx = RunContext(recipe=load_recipe("tiny", [f"plugins.eval.judge_url={server.url}"]),
                         pm=visplay.plugins.get_plugin_manager(), run_dir=tmp_path, log=log)
        (score,) = rejudge(ctx, f"{tmp_path.name}/rule@released", "endpoint")
        (item,) = log.rows("eval_items", "judge = ?", ["endpoint"])
    assert score["eval_id"] == f"{tmp_path.name}/endpoint@released" and score["correct"] == 1
    assert item["judge_prompt"].startswith(f"[system] {JUDGE_SYSTEM}") and item["reason"] == "judged_correct"
    assert "Correct answer: D. Answer to be judged: fish." in server.requests[0][2]["messages"][-1]["content"]


def test_eval_progress_counts_items_off_a_terminal_and_quiet_silences_it(tmp_path, data_dir, models, capsys,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["eval", str(tmp_path), "eval.batch_size=1", "--benchmarks", "mmmu,hallusionbench", "--data",
            str(data_dir)]
    assert main(args) == 0
    err = capsys.readouterr().err  # captured: not a terminal, so plain lines
    lines = [line for line in err.splitlines() if line.startswith("eval ")]
    assert [line.split(" item")[0] for line in lines] == ["eval mmmu: 1/2", "eval mmmu: 2/2",
                                                           "eval hallusionbench: 1/2", "eval hallusionbench: 2/2"]
    assert main([*args, "--quiet"]) == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("eval ")]


def test_lmms_eval_mm_vet_needs_a_model_judge_and_scores_its_graded_reply(tmp_path, data_dir, models, capsys,
                                                                           monkeypatch):
    from support.eval import JudgeServer

    monkeypatch.chdir(tmp_path)
    args = ["--benchmarks", "mm-vet", "--data", str(data_dir), "--protocol", "lmms-eval"]
    assert main(["eval", str(tmp_path), *args]) == 2  # the rule judge: refused before a model loads
    assert "pass --judge local or --judge endpoint" in capsys.readouterr().err and not models.loaded
    with JudgeServer(mode="reply:0.5") as server:  # MM-Vet's grader answers a score in 0..1
        assert main(["eval", str(tmp_path), f"plugins.eval.judge_url={server.url}", *args, "--judge",
                     "endpoint"]) == 0
    assert server.requests and all("| " in body["messages"][-1]["content"] for _, _, body in server.requests)
    with RunLog(tmp_path / "eval.db", readonly=True) as log:
        (score,) = log.rows("eval_scores", "benchmark = ?", ["mm-vet"])
    assert score["eval_id"].endswith("/endpoint@lmms-eval")
    assert (score["correct"], score["accuracy"]) == (0, 50.0)  # lmms-eval's number: the mean score x 100
