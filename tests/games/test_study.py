"""reproduce/games_study.py: the findings table is made from the runs' JSON, and docs are rewritten from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("games_study", ROOT / "reproduce" / "games_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(arm, seed, pass1):
    """A run result with pass@1 per iteration (maj@m 0.1 above it, silver 0.5)."""
    return {"arm": arm, "seed": seed, "eval": {str(i): {"gold/sample_accuracy": p, "gold/accuracy": p + 0.1,
                                                        "gold/silver_accuracy": 0.5} for i, p in enumerate(pass1)}}


def test_table_means_ranges_gains_and_floor(study):
    results = [result("paper", 0, [0.2, 0.25, 0.3]), result("paper", 1, [0.1, 0.1, 0.05]),
               result("gold", 0, [0.2, 0.3, 0.4]), result("gold", 1, [0.1, 0.2, 0.3])]
    table, summary = study.summarise(results)
    assert "| paper | cold start | 2 | 0.150 [0.100, 0.200] | 0.250 [0.200, 0.300] | - |" in table
    assert "| paper | 2 | 2 | 0.175 [0.050, 0.300] |" in table
    assert summary["paper"]["gain"] == pytest.approx([0.1, -0.05])
    assert "| paper | 0.025 [-0.050, 0.100] | 1/2 |" in table
    assert "| gold | 0.200 [0.200, 0.200] | 2/2 |" in table
    # the floor is each seed's cold-start model: one row, no gain by construction
    assert "| floor | cold start | 2 | 0.150 [0.100, 0.200] |" in table and "| floor | 1 |" not in table
    assert summary["floor"]["0"]["gold/sample_accuracy"] == [0.2, 0.1] and "gain" not in summary["floor"]
    assert table.index("| floor |") < table.index("| paper |") < table.index("| gold |")


def test_docs_rewritten_between_markers_only(study, tmp_path):
    page = tmp_path / "games.md"
    page.write_text(f"intro\n{study.BEGIN}\nold table\n{study.END}\nafter\n")
    study.rewrite_docs(page, "| new |")
    assert page.read_text() == f"intro\n{study.BEGIN}\n| new |\n{study.END}\nafter\n"
    other = tmp_path / "other.md"
    other.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        study.rewrite_docs(other, "t")


def test_frozen_questioner_never_updates_and_leaves_the_reasoner_to_grpo(study):
    from visplay.types import Rollout

    plugin = study.FrozenQuestioner()
    assert plugin.visplay_make_optimizer(ctx=None, role="reasoner", policy=None) is None
    optimizer = plugin.visplay_make_optimizer(ctx=None, role="questioner", policy=None)
    rollouts = [Rollout(key=f"k{i}", group="g", prompt=None, token_ids=[1], old_logprobs=[0.0], reward=float(i))
                for i in range(3)]
    assert optimizer.update(rollouts).advantages == {"k0": 0.0, "k1": 0.0, "k2": 0.0}
    assert optimizer.save("anywhere") == {}


def test_unfinished_runs_count_for_their_iterations_but_not_for_gains(study):
    partial = {**result("paper", 2, [0.3, 0.5]), "finished": False}
    table, summary = study.summarise([result("paper", 0, [0.2, 0.25, 0.3]), partial])
    assert "| paper | 1 | 2 | 0.375 [0.250, 0.500] |" in table and "| paper | 2 | 1 | 0.300 [0.300, 0.300] |" in table
    assert summary["paper"]["gain"] == pytest.approx([0.1])
    assert "Unfinished runs" in table and "paper seed 2" in table


def test_table_only_reads_the_recorded_json_when_no_run_folders_exist(study, tmp_path, capsys):
    runs = [{"finished": True, **result("paper", 0, [0.2, 0.3])}]
    (tmp_path / "study.json").write_text(__import__("json").dumps({"runs": runs}))
    assert study.main(["--out", str(tmp_path), "--table-only"]) == 0
    assert "| paper | 0.100 [0.100, 0.100] | 1/1 |" in capsys.readouterr().out
