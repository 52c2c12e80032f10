"""Testing visplay plugins in a few lines, the way pytest's ``pytester`` helps test pytest plugins.

- :func:`make_context`: a RunContext over a recipe with your plugin registered; call hooks through ``ctx.hooks``.
- :func:`question_items`, :func:`answer_items`: the items a reward or filter plugin is handed.
- :class:`ScriptedSampler`, :class:`StandinPolicy`: a sampler that answers from a function, and a policy around it.
- :func:`run_standin`: the whole self-play loop with small stand-in plugins (a unigram "VLM" trained by REINFORCE
  and a toy question/answer format, :class:`StandinModels`, :class:`StandinAlgorithm`), so a plugin can be run
  through the real engine, run log and checkpoints in seconds; returns the run log's path.

Example (the example third-party plugin's own test, plugins/examples/visplay-length-reward/tests)::

    ctx = make_context(["plugins.length_reward.max_tokens=4"], plugins=[visplay_length_reward])
    components = ctx.hooks.reward_components("reasoner", answer_items(["\\\\boxed{1}", "a b c d e"]))
    assert components["brevity"] == ("visplay_length_reward", [0.75, 0.0])
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visplay.config import plugin_section
from visplay.context import RunContext
from visplay.hookspecs import hookimpl
from visplay.keys import sample_key
from visplay.loop.votes import majority_vote
from visplay.seeding import derive_seed
from visplay.session import PluginSession
from visplay.types import (
    AnswerItem,
    FilterDecision,
    Generation,
    ParsedQuestion,
    Prompt,
    QuestionItem,
    SamplingParams,
    UpdateResult,
)

# --- contexts and items ------------------------------------------------------------------------------------------


def make_context(overrides: Sequence[str] = (), *, plugins: Iterable[Any] = (), recipe: str | Path = "tiny",
                 autoload: bool = False, run_dir: str | Path = ".", log: Any = None) -> RunContext:
    """A RunContext over ``recipe`` (+ ``key=value`` overrides) with ``plugins`` registered, through one plugin
    session (the recipe's plugin sections are those of the same plugins; sections of others stay unchecked).

    :param autoload: also load the installed entry-point plugins (default: only ``plugins``, so a test sees exactly
        the plugins it names).
    """
    session = PluginSession(extra=tuple(plugins), autoload=autoload)
    return session.context(session.load_recipe(str(recipe), list(overrides)), run_dir, log=log)


def generation(text: str, prompt: Prompt | None = None, seed: int = 0, sample_index: int = 0) -> Generation:
    """A Generation of ``text`` with one token per whitespace-separated word (log-probs 0)."""
    ids = [int.from_bytes(hashlib.sha256(w.encode()).digest()[:2], "little") for w in text.split()]
    return Generation(prompt=prompt or Prompt(user=""), text=text, token_ids=ids, logprobs=[0.0] * len(ids),
                      seed=seed, sample_index=sample_index)


def question_items(ctx: RunContext, texts: Sequence[str], votes: Sequence[Sequence[str | None] | None] | None = None,
                   *, group: str = "i1/questioner/s0/p0") -> list[QuestionItem]:
    """Questioner items: each text parsed by the context's plugins, voted with ``votes[k]`` (answers; None: not
    voted), keys from ``visplay_answer_key``."""
    items = []
    for k, text in enumerate(texts):
        answers = votes[k] if votes is not None else None
        vote = None
        if answers is not None:
            keys = [None if a is None else ctx.hooks.answer_key(a) or a for a in answers]
            vote = ctx.hooks.vote(list(answers), keys) or majority_vote(list(answers), keys)
        items.append(QuestionItem(key=sample_key(group, k), image_id="image", group=group,
                                  generation=generation(text), parsed=ctx.hooks.parse_question(text), vote=vote))
    return items


def answer_items(texts: Sequence[str], silver: str | None = None, *, extracted: Sequence[str | None] | None = None,
                 group: str = "i1/reasoner/s0/p0") -> list[AnswerItem]:
    """Reasoner rollouts for one question whose silver label is ``silver`` (keys are the answers themselves)."""
    extracted = list(extracted) if extracted is not None else [None] * len(texts)
    return [AnswerItem(key=sample_key(group, k), question_key="i1/reasoner_set/s0/p0/g0", group=group,
                       generation=generation(text), extracted=answer, answer_key=answer, silver_label=silver,
                       silver_key=silver) for k, (text, answer) in enumerate(zip(texts, extracted))]


# --- samplers and policies ---------------------------------------------------------------------------------------


class ScriptedSampler:
    """A Sampler answering each prompt with ``reply(prompt, sample_index)`` (or a fixed text); records its calls."""

    def __init__(self, reply: Callable[[Prompt, int], str] | str = ""):
        self.reply = reply if callable(reply) else (lambda prompt, j: reply)
        self.calls: list[tuple[list[Prompt], list[SamplingParams]]] = []

    def sample(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Generation]]:
        self.calls.append((list(prompts), list(params)))
        return [[generation(self.reply(p, j), p, sp.seed, j) for j in range(sp.n)] for p, sp in zip(prompts, params)]


class StandinPolicy:
    """A Policy around a sampler, with no weights (for hooks that only sample, e.g. an evaluation)."""

    def __init__(self, sampler: Any, role: str = "reasoner"):
        self.role, self._sampler = role, sampler

    def sampler(self) -> Any:
        return self._sampler

    def save(self, directory: str) -> dict[str, str]:
        return {}

    def load_weights(self, directory: str) -> None:
        return None

    def weights_sha256(self) -> str:
        return hashlib.sha256(b"").hexdigest()


# --- a whole run with stand-in plugins ---------------------------------------------------------------------------

VOCAB = ["what", "how", "many", "color", "is", "the", "shape", "?", "red", "blue", "green", "1", "2", "3",
         "circle", "square", "."]
ANSWERS = {"red", "blue", "green", "1", "2", "3", "circle", "square"}

STANDIN_OVERRIDES = [
    "model.backend=standin", "optimizer.name=standin", "plugins.standin.lr=0.05", "data.source=procedural",
    "data.num_images=12", "plugins.images.size=32", "iterations=2",
    "questioner.steps=2", "questioner.images_per_step=2", "questioner.group_size=3", "questioner.votes=4",
    "questioner.sampling.max_new_tokens=6", "reasoner.steps=2", "reasoner.questions_per_step=2",
    "reasoner.group_size=3", "reasoner.votes=4", "reasoner.set_images=4", "reasoner.sampling.max_new_tokens=4",
    "plugins.standin.band=[0.0,1.0]",
]
"""Overrides of the tiny recipe that make a run of the stand-in plugins take seconds."""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class UnigramPolicy:
    """Logits over VOCAB, nudged per (image, prompt) by a fixed hash-seeded bias so answers depend on input."""

    def __init__(self, role: str, logits: Any):
        import torch

        self.role = role
        self.logits = torch.nn.Parameter(logits.clone())

    def _logits(self, prompt: Prompt) -> Any:
        import torch

        tag = f"{prompt.image.image_id if prompt.image else ''}|{prompt.user}"
        seed = int.from_bytes(hashlib.sha256(tag.encode()).digest()[:4], "little")
        bias = torch.from_numpy(np.random.default_rng(seed).normal(0.0, 1.0, len(VOCAB)).astype(np.float32))
        return self.logits + bias

    def sampler(self) -> UnigramSampler:
        return UnigramSampler(self)

    def logprobs(self, prompt: Prompt, tokens: list[int]) -> Any:
        import torch

        return torch.log_softmax(self._logits(prompt), -1)[torch.tensor(tokens, dtype=torch.long)]

    def save(self, directory: str) -> dict[str, str]:
        from safetensors.torch import save_file

        path = Path(directory) / "weights.safetensors"
        save_file({"logits": self.logits.detach().clone()}, str(path))
        return {"weights.safetensors": _sha(path)}

    def load_weights(self, directory: str) -> None:
        import torch
        from safetensors.torch import load_file

        with torch.no_grad():
            self.logits.copy_(load_file(str(Path(directory) / "weights.safetensors"))["logits"])

    def weights_sha256(self) -> str:
        return hashlib.sha256(self.logits.detach().numpy().tobytes()).hexdigest()


class UnigramSampler:
    """Samples ``max_new_tokens`` words per request from the policy's (seeded) distribution."""

    def __init__(self, policy: UnigramPolicy):
        self.policy = policy

    def sample(self, prompts: Sequence[Prompt], params: Sequence[SamplingParams]) -> list[list[Generation]]:
        import torch

        out = []
        for prompt, p in zip(prompts, params):
            with torch.no_grad():
                logp = torch.log_softmax(self.policy._logits(prompt) / max(p.temperature, 1e-6), -1).numpy()
            probs = np.exp(logp) / np.exp(logp).sum()
            gens = []
            for j in range(p.n):
                rng = np.random.default_rng(derive_seed(p.seed, j))
                tokens = [int(t) for t in rng.choice(len(VOCAB), size=p.max_new_tokens, p=probs)]
                gens.append(Generation(prompt=prompt, text=" ".join(VOCAB[t] for t in tokens), token_ids=tokens,
                                       logprobs=[float(logp[t]) for t in tokens], seed=p.seed, sample_index=j))
            out.append(gens)
        return out


class Reinforce:
    """Group-normalised advantages and one Adam step on sum(advantage * log-prob)."""

    def __init__(self, policy: UnigramPolicy, lr: float):
        import torch

        self.policy = policy
        self.opt = torch.optim.Adam([policy.logits], lr=lr)

    def update(self, rollouts: list[Any]) -> UpdateResult:
        groups: dict[str, list[float]] = {}
        for r in rollouts:
            groups.setdefault(r.group, []).append(r.reward)
        advantages = {}
        for r in rollouts:
            values = np.array(groups[r.group])
            advantages[r.key] = float((r.reward - values.mean()) / (values.std() + 1e-6))
        self.opt.zero_grad()
        loss = -sum(advantages[r.key] * self.policy.logprobs(r.prompt, r.token_ids).sum() for r in rollouts)
        loss = loss / len(rollouts)
        loss.backward()
        self.opt.step()
        return UpdateResult(advantages=advantages, metrics={"loss": float(loss.detach())})

    def save(self, directory: str) -> dict[str, str]:
        from safetensors.torch import save_file

        Path(directory).mkdir(parents=True, exist_ok=True)
        state = self.opt.state_dict()
        tensors = {f"{k}/{name}": v.clone() for k, s in state["state"].items() for name, v in s.items()}
        save_file(tensors, str(Path(directory) / "state.safetensors"))
        return {"state.safetensors": _sha(Path(directory) / "state.safetensors")}

    def load(self, directory: str) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(Path(directory) / "state.safetensors"))
        state = self.opt.state_dict()
        for key, value in tensors.items():
            k, name = key.split("/")
            state["state"].setdefault(int(k), {})[name] = value
        self.opt.load_state_dict(state)


@dataclass
class StandinOptions:
    """The stand-in plugins' settings (``plugins.standin``)."""

    lr: float = 0.05
    """REINFORCE's Adam learning rate (optimizer ``standin``)."""
    band: list[float] = field(default_factory=lambda: [0.25, 0.75])
    """Inclusive confidence band of the stand-in filter."""
    weights: dict[str, float] = field(default_factory=dict)
    """Extra reward components (a third party's) weighted into the stand-in total: {component: weight}."""

    legacy_keys = {"reward.weights": "weights"}  # what the algorithm plugin reads, for tests written against it


def _standin(ctx: Any) -> StandinOptions:
    return plugin_section(ctx.recipe, "standin")


class StandinModels:
    """Model backend ``standin`` (a UnigramPolicy), its sampler, and optimizer ``standin`` (REINFORCE)."""

    plugin_name = "standin_models"

    @hookimpl
    def visplay_recipe_sections(self) -> dict[str, type]:
        return {"standin": StandinOptions}

    @hookimpl
    def visplay_names(self) -> dict[str, list[str]]:
        return {"backend": ["standin"], "optimizer": ["standin"]}

    @hookimpl
    def visplay_load_policy(self, ctx: Any, role: str, init_from: str | None) -> Any:
        import torch
        from safetensors.torch import load_file

        if ctx.recipe.model.backend != "standin":
            return None
        if init_from is None:
            rng = np.random.default_rng(ctx.seed_for("base_model"))
            return UnigramPolicy(role, torch.from_numpy(rng.normal(0.0, 0.5, len(VOCAB)).astype(np.float32)))
        return UnigramPolicy(role, load_file(str(Path(init_from) / "weights.safetensors"))["logits"])

    @hookimpl(tryfirst=True)
    def visplay_make_sampler(self, ctx: Any, role: str, policy: Any) -> Any:
        return policy.sampler() if isinstance(policy, UnigramPolicy) else None

    @hookimpl
    def visplay_make_optimizer(self, ctx: Any, role: str, policy: Any) -> Any:
        if ctx.recipe.optimizer.name != "standin":
            return None
        return Reinforce(policy, float(_standin(ctx).lr))


def _params(section: Any, n: int, seed: int) -> SamplingParams:
    s = section.sampling
    return SamplingParams(n=n, temperature=s.temperature, max_new_tokens=s.max_new_tokens, seed=seed)


class StandinAlgorithm:
    """A toy question/answer format for the unigram model: a question ends at ``?``, an answer is a vocabulary
    word; rewards valid x uncertainty (questioner) and accuracy against the silver label (reasoner)."""

    plugin_name = "standin_algorithm"

    @hookimpl
    def visplay_generate_questions(self, ctx, sampler, images, n, seeds):
        prompts = [Prompt(user="Ask a question about the image.", image=img) for img in images]
        return sampler.sample(prompts, [_params(ctx.recipe.questioner, n, s) for s in seeds])

    @hookimpl
    def visplay_sample_answers(self, ctx, sampler, questions, n, seeds, purpose):
        prompts = [Prompt(user=q.text, image=q.image) for q in questions]
        return sampler.sample(prompts, [_params(ctx.recipe.reasoner, n, s) for s in seeds])

    @hookimpl
    def visplay_parse_question(self, ctx, text):
        words = text.split()
        if "?" not in words or words.index("?") == 0:
            return ParsedQuestion(valid=False, reason="no question mark")
        return ParsedQuestion(valid=True, question=" ".join(words[: words.index("?") + 1]), qtype="open")

    @hookimpl
    def visplay_extract_answers(self, ctx, texts):
        out = []
        for text in texts:
            found = [w for w in text.split() if w in ANSWERS]
            out.append(found[-1] if found else None)
        return out

    @hookimpl
    def visplay_answer_key(self, ctx, answer):
        return answer.strip().lower()

    @hookimpl
    def visplay_reward_components(self, ctx, role, items):
        if role == "questioner":
            return {"valid": [float(i.parsed.valid) for i in items],
                    "uncertainty": [1 - abs(2 * i.vote.confidence - 1) if i.vote else 0.0 for i in items]}
        return {"accuracy": [float(i.answer_key is not None and i.answer_key == i.silver_key) for i in items]}

    @hookimpl
    def visplay_combine_rewards(self, ctx, role, components, items):
        if role == "questioner":
            total = [v * max(u, 0.0) for v, u in zip(components["valid"], components["uncertainty"])]
        else:
            total = list(components["accuracy"])
        weights = _standin(ctx).weights or {}
        for name, weight in weights.items():  # extra components (e.g. a third party's) weighted in
            if name in components and name not in ("valid", "uncertainty", "accuracy"):
                total = [t + float(weight) * v for t, v in zip(total, components[name])]
        return total

    @hookimpl
    def visplay_filter_questions(self, ctx, items):
        low, high = _standin(ctx).band
        return [FilterDecision(keep=low <= i.vote.confidence <= high, reason="kept" if low <= i.vote.confidence
                               <= high else "confidence_out_of_band") for i in items]


def standin_plugins() -> tuple[Any, ...]:
    """The stand-ins for models and algorithm, and the installed image source plugin (procedural images), found
    through its entry point like any plugin (the core imports no plugin)."""
    from importlib import metadata

    from visplay.plugins import ENTRY_POINT_GROUP

    images = [ep.load() for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == "images"]
    return (*images, StandinModels(), StandinAlgorithm())


def run_standin(run_dir: str | Path, overrides: Sequence[str] = (), *, plugins: Iterable[Any] = ()) -> Path:
    """Run the self-play loop with the stand-in plugins plus ``plugins`` into ``run_dir``; return its run.db.

    Only the named plugins take part (entry-point plugins are not loaded), so a plugin's effect is its own.
    """
    from visplay.loop.engine import run_recipe

    session = PluginSession(extra=(*standin_plugins(), *plugins), autoload=False)
    cfg = session.load_recipe("tiny", [*STANDIN_OVERRIDES, f"run_dir={run_dir}", *overrides])
    return run_recipe(cfg, session=session, quiet=True)
