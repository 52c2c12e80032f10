"""A third-party visplay plugin, packaged on its own: a ``brevity`` reward component.

``brevity`` = 1 - min(1, response tokens / max_tokens) for every item of either role: shorter responses score
higher. It changes nothing unless a recipe weights it in, e.g. ``reward.weights={brevity: 0.1}``.
Settings (``plugins.length_reward`` in a recipe):
  max_tokens: int (default 64)     length at which brevity reaches 0
  replace_combine: bool (false)    replace the combination rule by the plain mean of all components
"""

from __future__ import annotations

from visplay.config import plugin_options
from visplay.hookspecs import hookimpl

__version__ = "0.2.0"


def _options(ctx) -> dict:
    opts = {"max_tokens": 64, "replace_combine": False}
    given = plugin_options(ctx.recipe, "length_reward")
    unknown = set(given) - set(opts)
    if unknown:
        raise ValueError(f"plugins.length_reward: unknown key(s) {sorted(unknown)}; known: {sorted(opts)}")
    opts.update(given)
    if int(opts["max_tokens"]) < 1:
        raise ValueError("plugins.length_reward.max_tokens must be >= 1")
    return opts


@hookimpl
def visplay_reward_components(ctx, role, items):
    max_tokens = int(_options(ctx)["max_tokens"])
    return {"brevity": [1.0 - min(1.0, len(item.generation.token_ids) / max_tokens) for item in items]}


@hookimpl(tryfirst=True)
def visplay_combine_rewards(ctx, role, components, items):
    if not _options(ctx)["replace_combine"]:
        return None  # let the recipe's rule (paper/released/weighted) combine
    names = sorted(components)
    return [sum(components[n][i] for n in names) / len(names) for i in range(len(items))]
