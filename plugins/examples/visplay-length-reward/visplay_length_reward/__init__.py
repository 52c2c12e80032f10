"""A third-party visplay plugin: reward component brevity = 1 - min(1, tokens / max_tokens), either role."""
import visplay


@visplay.section
class LengthReward:
    max_tokens: int = 64
    """Response length (tokens) at which brevity reaches 0."""
    replace_combine: bool = False
    """Replace the recipe's combination rule by the plain mean of all components."""


@visplay.hookimpl
def visplay_recipe_sections():  # plugins.length_reward: checked at load and documented like the core's sections
    return {"length_reward": LengthReward}

@visplay.hookimpl
def visplay_names():  # the component a recipe may weight (plugins.algorithm.reward.weights), checked at load
    return {"reward_component": ["brevity"]}

@visplay.hookimpl
def visplay_reward_components(ctx, role, items):
    n = visplay.plugin_section(ctx.recipe, "length_reward").max_tokens
    return {"brevity": [1.0 - min(1.0, len(item.generation.token_ids) / n) for item in items]}

@visplay.hookimpl(tryfirst=True)
def visplay_combine_rewards(ctx, role, components, items):
    if visplay.plugin_section(ctx.recipe, "length_reward").replace_combine:
        return [sum(values[i] for values in components.values()) / len(components) for i in range(len(items))]
