"""visplay grpo plugin: hook implementations (see visplay/hookspecs.py).

``visplay_make_optimizer`` answers optimizer name ``grpo`` with a :class:`visplay_grpo.optimizer.GRPOOptimizer`
configured from the plugin's own section ``plugins.grpo`` (visplay_grpo/options.py). ``update_batch_size`` counts
prompts, as EasyR1's ``global_batch_size``: the optimizer gets it times the role's ``group_size`` rollouts
(hiyouga/EasyR1 verl/workers/fsdp_workers.py:143, bruno686/VisPlay verl/workers/fsdp_workers.py:128-129:
``config.global_batch_size *= self.config.rollout.n``). ``visplay_footprint`` reports the optimizer's memory.
"""

from __future__ import annotations

from typing import Any

from visplay.api import GIB, Footprint, MemoryItem, hookimpl, plugin_section
from visplay_grpo.options import GrpoOptions

NAME = "grpo"


@hookimpl
def visplay_recipe_sections() -> dict[str, type]:
    return {"grpo": GrpoOptions}


@hookimpl
def visplay_names() -> dict[str, list[str]]:
    return {"optimizer": [NAME]}


def options(ctx: Any) -> GrpoOptions:
    return plugin_section(ctx.recipe, "grpo")


@hookimpl
def visplay_make_optimizer(ctx: Any, role: str, policy: Any) -> Any:
    if ctx.recipe.optimizer.name != NAME:
        return None
    from visplay_grpo.optimizer import GRPOOptimizer

    opt = options(ctx)
    section = ctx.recipe.get(role)
    temperature = float(section.sampling.temperature) if section is not None else 1.0
    group_size = int(section.group_size) if section is not None else 1
    max_new_tokens = int(section.sampling.max_new_tokens) if section is not None else 1
    return GRPOOptimizer(
        policy, lr=float(opt.lr), weight_decay=float(opt.weight_decay), grad_clip=float(opt.grad_clip),
        clip_low=float(opt.clip_low), clip_high=float(opt.clip_high), dual_clip=float(opt.dual_clip),
        kl_coef=float(opt.kl_coef), kl_type=str(opt.kl_type), adv_eps=float(opt.adv_eps),
        micro_batch_size=int(opt.micro_batch_size),
        update_batch_size=None if opt.update_batch_size is None else int(opt.update_batch_size) * group_size,
        temperature=temperature, old_logprobs=opt.old_logprobs,
        seed=ctx.seed_for("grpo", role), loss_agg=str(opt.loss_agg or "token_mean"),
        max_tokens_per_micro_batch=None if opt.max_tokens_per_micro_batch is None
        else int(opt.max_tokens_per_micro_batch),
        advantage_estimator=str(opt.advantage_estimator), norm_adv_by_std=bool(opt.norm_adv_by_std),
        advantage_dtype=str(opt.advantage_dtype or "float64"), policy_loss=str(opt.policy_loss),
        tau_positive=float(opt.tau_positive), tau_negative=float(opt.tau_negative),
        clip_cov_ratio=float(opt.clip_cov_ratio), clip_cov_lb=float(opt.clip_cov_lb),
        clip_cov_ub=float(opt.clip_cov_ub), kl_cov_ratio=float(opt.kl_cov_ratio), ppo_kl_coef=float(opt.ppo_kl_coef),
        norm_length=int(opt.norm_length) if opt.norm_length is not None else max_new_tokens,
        clipfrac_higher=str(opt.clipfrac_higher or "positive"), drop_zero_variance=bool(opt.drop_zero_variance),
    )


# --- planning ------------------------------------------------------------------------------------------------


@hookimpl
def visplay_footprint(ctx: Any, facts: Any, placement: Any, nproc: int, gpu_memory_gib: float) -> Footprint | None:
    """Per training process: AdamW's two moments, the frozen reference (when the KL term needs one) and one
    micro-batch's activations at full length (an upper bound); the updates each step makes."""
    if ctx.recipe.optimizer.name != NAME:
        return None
    opt, recipe = options(ctx), ctx.recipe
    shards = nproc if recipe.distributed.strategy == "fsdp" else 1
    adamw = 2 * facts.trainable_parameters * facts.dtype_bytes
    reference = facts.reference_bytes if opt.kl_coef > 0 else 0
    tokens, rows, fix = micro_batch_tokens(recipe, opt, facts.prompt_tokens)
    state = "host/training" if getattr(facts, "offloaded", False) and shards > 1 else "training"  # FSDP CPU offload
    items = [
        MemoryItem(state, "adamw", adamw / shards / GIB, "distributed.strategy=fsdp"),
        MemoryItem(state, "reference", reference / shards / GIB, "plugins.grpo.kl_coef=0"),
        MemoryItem("training", "activations", tokens * facts.activation_bytes_per_token / GIB, fix, transient=True),
    ]
    if facts.activation_bytes_per_sequence:
        items.append(MemoryItem("training", "vision", rows * facts.activation_bytes_per_sequence / GIB, fix,
                                transient=True))
    one_at_a_time = [tokens * getattr(facts, "activation_bytes_recomputed_per_token", 0.0),
                     rows * getattr(facts, "activation_bytes_recomputed_per_sequence", 0.0)]
    lines = []
    if any(one_at_a_time):  # the backward runs the chunks, the layers and the blocks one after another
        parts = [*one_at_a_time, facts.activation_bytes_fixed]
        items.append(MemoryItem("training", "recomputed", max(parts) / GIB, fix, transient=True))
        lines.append("backward peak: the largest of a recomputed layer {:.3f}, a recomputed vision block {:.3f} and a "
                     "log-prob chunk {:.3f} GiB (one at a time)".format(*(x / GIB for x in parts)))
    elif facts.activation_bytes_fixed:
        items.append(MemoryItem("training", "logits", facts.activation_bytes_fixed / GIB, transient=True))
    out = Footprint(lines=lines, items=[*items, MemoryItem("disk/snapshot", "adamw", adamw / GIB)])
    for role, (rollouts, updates) in updates_per_step(recipe, opt).items():
        batch = int(opt.update_batch_size) * int(recipe[role].group_size) if opt.update_batch_size else rollouts
        per_rank = -(-batch // nproc)
        each = (f"{-(-per_rank // opt.micro_batch_size)} micro-batch(es) of <= {opt.micro_batch_size}"
                if opt.max_tokens_per_micro_batch is None else
                f"{per_rank} rollouts in micro-batches of <= {opt.max_tokens_per_micro_batch} tokens")
        out.lines.append(f"updates per step ({role}): {rollouts} rollouts / update batch {batch} rollouts "
                         f"= {updates} AdamW updates, each {each} per process")
    out.lines.append(f"optimizer grpo: lr {opt.lr}, update batch "
                     f"{f'{opt.update_batch_size} prompts' if opt.update_batch_size else 'whole rollout batch'}, "
                     f"micro batch {micro_line(opt)}, kl {opt.kl_type} x {opt.kl_coef}, loss {opt.loss_agg}")
    if (opt.advantage_estimator, opt.policy_loss) != ("grpo", "dual_clip"):
        out.lines.append(f"optimizer grpo: advantages {opt.advantage_estimator}, policy loss {opt.policy_loss}")
    return out


def micro_batch_tokens(recipe: Any, opt: GrpoOptions, prompt_tokens: int) -> tuple[int, int, str]:
    """(tokens, rows, the setting that shrinks them) of the largest training forward: ``micro_batch_size``
    sequences at full length, or under a token budget the budget (a longer sequence alone) and as many rows as
    the shortest sequences (prompt + 1 token) fit in it."""
    longest = prompt_tokens + max(int(recipe.questioner.sampling.max_new_tokens),
                                  int(recipe.reasoner.sampling.max_new_tokens))
    if opt.max_tokens_per_micro_batch is None:
        half = max(int(opt.micro_batch_size) // 2, 1)
        fix = f"plugins.grpo.micro_batch_size={half}" if opt.micro_batch_size > 1 else ""
        return int(opt.micro_batch_size) * longest, int(opt.micro_batch_size), fix
    budget = int(opt.max_tokens_per_micro_batch)
    fix = f"plugins.grpo.max_tokens_per_micro_batch={max(budget // 2, longest)}" if budget // 2 >= longest else ""
    return max(budget, longest), max(budget // (prompt_tokens + 1), 1), fix


def updates_per_step(recipe: Any, opt: GrpoOptions) -> dict[str, tuple[int, int]]:
    """{role: (rollouts per step, optimizer updates per step)}: ``update_batch_size`` counts prompts, as EasyR1's
    ``global_batch_size`` (times rollout.n, the role's group size); None: the whole rollout batch."""
    q, r = recipe.questioner, recipe.reasoner
    rollouts = {"questioner": q.images_per_step * q.group_size, "reasoner": r.questions_per_step * r.group_size}
    out = {}
    for role, n in rollouts.items():
        size = int(opt.update_batch_size) * int(recipe[role].group_size) if opt.update_batch_size else None
        out[role] = (n, -(-n // size) if size else 1)
    return out


def micro_line(opt: GrpoOptions) -> str:
    if opt.max_tokens_per_micro_batch is None:
        return str(opt.micro_batch_size)
    return f"by a budget of {opt.max_tokens_per_micro_batch} tokens (rows x longest)"
