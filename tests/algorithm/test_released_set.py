"""The reasoner set as the released code builds it: its sampling settings and its shape.

Released (bruno686/VisPlay@3aa895b): solver_train.sh:11 runs question_generate.bash with num_samples 1000, which
starts question_generate.py 8 times (seeds 0-7), each asking one question (n=1) about each of the dataset's first
1,000 rows, with ``vllm.SamplingParams(max_tokens=4096, temperature=1.0, top_p=0.95)`` (question_generate.py:206-212)
where the questioner trains with top_p 0.99 and 2,048 tokens (train_examples/cot_config.yaml:9, 57-58).
"""

from __future__ import annotations

import pytest
from support.algorithm import RecordingSampler, make_ctx

from visplay.config import RecipeError
from visplay.loader import explain_docs
from visplay.log.runlog import RunLog
from visplay.testing import run_standin
from visplay.types import ImageRecord

IMAGES = [ImageRecord(image_id=f"id{i}", image=None, source="test") for i in range(2)]  # type: ignore[arg-type]


def _sent(ctx, phase: str) -> list[tuple]:
    sampler = RecordingSampler()
    ctx.at(1, phase, 0).hooks.generate_questions(sampler=sampler, images=IMAGES, n=8, seeds=[3, 4])
    return [(sp.n, sp.seed, sp.temperature, sp.top_p, sp.top_k, sp.max_new_tokens) for sp in sampler.calls[0][1]]


def test_released_set_questions_are_sampled_as_question_generate_py():
    ctx = make_ctx("released")  # tiny recipe: questioner.sampling top_p 0.99, 48 tokens
    assert _sent(ctx, "reasoner_set") == [(8, 3, 1.0, 0.95, 0, 4096), (8, 4, 1.0, 0.95, 0, 4096)]
    assert _sent(ctx, "questioner") == [(8, 3, 1.0, 0.99, 0, 48), (8, 4, 1.0, 0.99, 0, 48)]  # training: unchanged


def test_paper_set_questions_keep_the_questioner_settings_and_each_setting_overrides():
    paper = make_ctx("paper", ["questioner.sampling.temperature=0.7", "questioner.sampling.top_k=5"])
    assert _sent(paper, "reasoner_set") == _sent(paper, "questioner") == [(8, 3, 0.7, 0.99, 5, 48),
                                                                          (8, 4, 0.7, 0.99, 5, 48)]
    given = make_ctx("released", ["plugins.algorithm.set_sampling.top_p=0.9",
                                  "plugins.algorithm.set_sampling.max_new_tokens=64"])
    assert _sent(given, "reasoner_set")[0] == (8, 3, 1.0, 0.9, 0, 64)
    paper_given = make_ctx("paper", ["plugins.algorithm.set_sampling.max_new_tokens=100"])
    assert _sent(paper_given, "reasoner_set")[0] == (8, 3, 1.0, 0.99, 0, 100)


@pytest.mark.parametrize(("override", "why"), [("top_p=0", r"must be in \(0.0, 1.0\], got 0.0"),
                                               ("max_new_tokens=0", "must be >= 1, got 0"),
                                               ("top_k=-1", "must be >= 0, got -1"),
                                               ("temperature=-1", r"must be in \[0.0, inf\], got -1.0")])
def test_bad_set_sampling_is_refused_at_load_naming_the_key(override, why):
    key = override.split("=")[0]
    with pytest.raises(RecipeError, match=rf"key 'plugins\.algorithm\.set_sampling\.{key}': {why}"):
        make_ctx("released", [f"plugins.algorithm.set_sampling.{override}"])


def test_set_settings_are_explained():
    from visplay_algorithm.options import AlgorithmOptions

    docs = explain_docs({"algorithm": AlgorithmOptions})
    assert "0.95" in docs["plugins.algorithm.set_sampling.top_p"]
    assert "4096" in docs["plugins.algorithm.set_sampling.max_new_tokens"]
    assert "first" in docs["reasoner.set_order"] and "1,000" in docs["reasoner.set_order"]


def _set_images(db) -> tuple[list[str], dict[int, list[str]]]:
    """(the pool's image ids in logged order, {iteration: the image of each reasoner-set question, in key order})."""
    with RunLog(db, readonly=True) as log:
        pool = [row["image_id"] for row in log.rows("images", order_by="rowid")]  # written in pool order
        asked: dict[int, list[str]] = {}
        for row in sorted(log.rows_matching("questions", phase="reasoner_set"), key=lambda r: r["key"]):
            asked.setdefault(row["iteration"], []).append(row["image_id"])
    return pool, asked


def test_set_order_first_asks_about_the_same_first_images_every_iteration(tmp_path):
    """The released shape on a stand-in run: 3 images x 2 questions, the pool's first 3 in both iterations."""
    shape = ["reasoner.set_images=3", "reasoner.questions_per_image=2"]
    pool, asked = _set_images(run_standin(tmp_path / "first", [*shape, "reasoner.set_order=first"]))
    assert sorted(asked) == [1, 2]
    for iteration in (1, 2):  # question keys: chunk step, then image position, then sample: pool order, 2 each
        assert asked[iteration] == [image for image in pool[:3] for _ in range(2)]
    _, shuffled = _set_images(run_standin(tmp_path / "shuffled", shape))  # the default: a permutation per iteration
    assert shuffled != asked
    assert all(len(v) == 6 for v in shuffled.values())
