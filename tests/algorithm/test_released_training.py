"""variant ``released``: the update batch (prompts x rollout.n), updates per step, and the loss aggregation.

Expected values from the released fork's trainer (bruno686/VisPlay@3aa895b) and EasyR1 (hiyouga/EasyR1@b44b311).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.models import make_policy, prompts
from support.scale import dry_run, write_fake_model, write_image_folder
from visplay_grpo import plugin as grpo_plugin
from visplay_grpo.core_algos import masked_mean, seq_mean_token_mean
from visplay_grpo.optimizer import GRPOOptimizer

from visplay.config import load_recipe
from visplay.context import RunContext
from visplay.plugins import get_plugin_manager
from visplay.types import Rollout

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"

pytestmark = pytest.mark.usefixtures("one_thread")


def _paths(tmp_path):
    model = write_fake_model(tmp_path / "models" / "qwen-vl-3b", "qwen-vl-3b")
    return [f"model.path={model}", f"data.images={write_image_folder(tmp_path / 'images')}"]


def test_released_3b_makes_4_updates_per_step(tmp_path):
    """512 prompts x n = 8 per step, global_batch_size 128 prompts (train_examples/cot_config.yaml:10, 29;
    questioner_train.sh:29) times rollout.n in the workers (verl/workers/fsdp_workers.py:128-129): 4 AdamW
    updates of 1,024 rollouts per GRPO step."""
    cfg = load_recipe("qwen-vl-3b", ["variant=released", *_paths(tmp_path)])
    assert (cfg.plugins.grpo.update_batch_size, cfg.plugins.grpo.loss_agg) == (128, "seq_mean_token_mean")
    text = dry_run(cfg, visible=8)
    for role in ("questioner", "reasoner"):
        assert f"updates per step ({role}): 4096 rollouts / update batch 1024 rollouts = 4 AdamW updates" in text
    assert load_recipe("qwen-vl-3b", _paths(tmp_path)).plugins.grpo.loss_agg == "token_mean"


def test_cli_dry_run_prints_updates_per_step(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "visplay.cli", "reproduce", "qwen-vl-3b", "variant=released",
                           *_paths(tmp_path), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "updates per step (questioner): 4096 rollouts / update batch 1024 rollouts = 4 AdamW updates" in proc.stdout


def test_plugin_multiplies_the_update_batch_by_the_group_size():
    """update_batch_size counts prompts: 2 prompts x group_size 4 = 8 rollouts per AdamW update."""
    recipe = load_recipe(TINY, ["plugins.grpo.update_batch_size=2", "reasoner.group_size=4"])
    ctx = RunContext(recipe=recipe, pm=get_plugin_manager(autoload=False), run_dir=Path("."))
    opt = grpo_plugin.visplay_make_optimizer(ctx, "reasoner", make_policy())
    assert opt.update_batch_size == 8
    ps = prompts()
    rollouts = [Rollout(f"p{p}/g{g}", f"p{p}", ps[p % 3], [40 + g, 41], [], float(g)) for p in range(4)
                for g in range(4)]
    assert opt.update(rollouts).metrics["actor/updates"] == 2.0


def test_seq_mean_weights_a_2_token_rollout_100x_a_200_token_one():
    """Per-token weight: seq-mean 1 / (N L_i) (dp_actor.py:268-274 at micro-batch 1), token-mean 1 / sum L."""
    values = torch.zeros(2, 200, requires_grad=True)
    mask = torch.zeros(2, 200)
    mask[0, :2], mask[1, :] = 1.0, 1.0
    (grad_seq,) = torch.autograd.grad(seq_mean_token_mean(values, mask), values)
    (grad_tok,) = torch.autograd.grad(masked_mean(values, mask), values)
    assert grad_seq[0, 0] / grad_seq[1, 0] == pytest.approx(100.0)
    assert grad_tok[0, 0] / grad_tok[1, 0] == pytest.approx(1.0)
    assert float(grad_seq[0, 0]) == pytest.approx(1 / (2 * 2)) and float(grad_tok[0, 0]) == pytest.approx(1 / 202)


def _rollouts():
    ps = prompts()
    lengths = [2, 9, 3, 7, 1, 5]  # uneven lengths: the two aggregations differ
    return [Rollout(f"k{i}", f"g{i % 2}", ps[i % 3], [40 + j for j in range(n)], [], float(i % 3))
            for i, n in enumerate(lengths)]


def _update_grads(loss_agg: str, micro: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    policy = make_policy()
    opt = GRPOOptimizer(policy, lr=1e-3, kl_coef=0.0, grad_clip=1e9, micro_batch_size=micro, loss_agg=loss_agg)
    result = opt.update(_rollouts())  # one update batch: p.grad keeps its (unclipped) gradient after the step
    return {n: p.grad.clone() for n, p in policy.trainable_parameters()}, result.advantages


def _manual_grads(aggregate, advantages) -> dict[str, torch.Tensor]:
    """The released loss by hand: ratio 1 at the old weights, loss_t = -A * ratio, aggregated, backward."""
    from visplay_grpo.core_algos import pad_rows

    policy = make_policy()
    rollouts = _rollouts()
    policy.model.train()
    rows, _ = policy.forward_stats([r.prompt for r in rollouts], [list(r.token_ids) for r in rollouts], grad=True)
    logp, mask = pad_rows(rows)
    adv = torch.tensor([advantages[r.key] for r in rollouts])[:, None].expand_as(logp)
    aggregate(-adv * torch.exp(logp - logp.detach()), mask).backward()
    return {n: p.grad.clone() for n, p in policy.trainable_parameters()}


def test_released_aggregation_is_independent_of_the_micro_batch_and_matches_by_hand():
    """seq_mean_token_mean = mean over rollouts of each rollout's token-mean, whatever the micro-batch size; the
    released fork computes it at micro-batch 1 (cot_config.yaml:30, solver_train.sh:27)."""
    g1, adv = _update_grads("seq_mean_token_mean", 1)
    g3, _ = _update_grads("seq_mean_token_mean", 3)
    manual = _manual_grads(seq_mean_token_mean, adv)
    for name in g1:
        assert torch.allclose(g1[name], g3[name], atol=1e-6, rtol=1e-4), name
        assert torch.allclose(g1[name], manual[name], atol=1e-6, rtol=1e-4), name
    tok, _ = _update_grads("token_mean", 2)
    manual_tok = _manual_grads(masked_mean, adv)
    for name in tok:
        assert torch.allclose(tok[name], manual_tok[name], atol=1e-6, rtol=1e-4), name
    assert any(not torch.allclose(tok[n], g1[n], atol=1e-6, rtol=1e-4) for n in g1)


def test_unknown_loss_agg_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="plugins.grpo.loss_agg"):
        GRPOOptimizer(make_policy(), loss_agg="sum")
