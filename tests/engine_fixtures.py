"""Small real stand-in plugins for engine tests: a unigram "VLM", a REINFORCE optimizer and a toy algorithm.

They fill every hook the engine calls with real (if tiny) behaviour: seeded sampling, log-probs, an Adam update
of a logits tensor, safetensors/JSON checkpoints. That makes the engine's determinism and resume testable in
seconds without the models and algorithm plugins. Run as a script to drive the engine in a subprocess:

    python tests/engine_fixtures.py run RUN_DIR [key=value ...]
    python tests/engine_fixtures.py resume RUN_DIR

``VISPLAY_TEST_KILL=iteration:phase:step:where`` makes the process SIGKILL itself at that step, ``where`` being
``sample`` (mid-step, before the commit) or ``commit`` (right after the step committed).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from visplay.hookspecs import hookimpl
from visplay.loop.seeding import derive_seed
from visplay.types import FilterDecision, Generation, ParsedQuestion, Prompt, SamplingParams, UpdateResult

VOCAB = ["what", "how", "many", "color", "is", "the", "shape", "?", "red", "blue", "green", "1", "2", "3",
         "circle", "square", "."]
ANSWERS = {"red", "blue", "green", "1", "2", "3", "circle", "square"}

STANDIN_OVERRIDES = [
    "model.backend=standin", "optimizer.name=standin", "optimizer.lr=0.05", "data.source=procedural",
    "data.num_images=12", "data.size=32", "iterations=2",
    "questioner.steps=2", "questioner.images_per_step=2", "questioner.group_size=3", "questioner.votes=4",
    "questioner.sampling.max_new_tokens=6", "reasoner.steps=2", "reasoner.questions_per_step=2",
    "reasoner.group_size=3", "reasoner.votes=4", "reasoner.set_images=4", "reasoner.sampling.max_new_tokens=4",
    "reasoner.filter.band=[0.0,1.0]",
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- model ---------------------------------------------------------------------------------------------------


class UnigramPolicy:
    """Logits over VOCAB, nudged per (image, prompt) by a fixed hash-seeded bias so answers depend on input."""

    def __init__(self, role: str, logits: torch.Tensor):
        self.role = role
        self.logits = torch.nn.Parameter(logits.clone())

    def _logits(self, prompt: Prompt) -> torch.Tensor:
        tag = f"{prompt.image.image_id if prompt.image else ''}|{prompt.user}"
        seed = int.from_bytes(hashlib.sha256(tag.encode()).digest()[:4], "little")
        bias = torch.from_numpy(np.random.default_rng(seed).normal(0.0, 1.0, len(VOCAB)).astype(np.float32))
        return self.logits + bias

    def sampler(self) -> UnigramSampler:
        return UnigramSampler(self)

    def logprobs(self, prompt: Prompt, tokens: list[int]) -> torch.Tensor:
        return torch.log_softmax(self._logits(prompt), -1)[torch.tensor(tokens, dtype=torch.long)]

    def save(self, directory: str) -> dict[str, str]:
        path = Path(directory) / "weights.safetensors"
        save_file({"logits": self.logits.detach().clone()}, str(path))
        return {"weights.safetensors": _sha(path)}

    def load_weights(self, directory: str) -> None:
        with torch.no_grad():
            self.logits.copy_(load_file(str(Path(directory) / "weights.safetensors"))["logits"])

    def weights_sha256(self) -> str:
        return hashlib.sha256(self.logits.detach().numpy().tobytes()).hexdigest()


class UnigramSampler:
    def __init__(self, policy: UnigramPolicy):
        self.policy = policy

    def sample(self, prompts: list[Prompt], params: list[SamplingParams]) -> list[list[Generation]]:
        out = []
        for prompt, p in zip(prompts, params):
            with torch.no_grad():
                logp = torch.log_softmax(self.policy._logits(prompt) / max(p.temperature, 1e-6), -1).numpy()
            gens = []
            for j in range(p.n):
                rng = np.random.default_rng(derive_seed(p.seed, j))
                tokens = [int(t) for t in rng.choice(len(VOCAB), size=p.max_new_tokens, p=np.exp(logp) / np.exp(logp).sum())]
                gens.append(Generation(prompt=prompt, text=" ".join(VOCAB[t] for t in tokens), token_ids=tokens,
                                       logprobs=[float(logp[t]) for t in tokens], seed=p.seed, sample_index=j))
            out.append(gens)
        return out


class Reinforce:
    """Group-normalised advantages and one Adam step on sum(advantage * log-prob)."""

    def __init__(self, policy: UnigramPolicy, lr: float):
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
        Path(directory).mkdir(parents=True, exist_ok=True)
        state = self.opt.state_dict()
        tensors = {f"{k}/{name}": v.clone() for k, s in state["state"].items() for name, v in s.items()}
        save_file(tensors, str(Path(directory) / "state.safetensors"))
        return {"state.safetensors": _sha(Path(directory) / "state.safetensors")}

    def load(self, directory: str) -> None:
        tensors = load_file(str(Path(directory) / "state.safetensors"))
        state = self.opt.state_dict()
        for key, value in tensors.items():
            k, name = key.split("/")
            state["state"].setdefault(int(k), {})[name] = value
        self.opt.load_state_dict(state)


class StandinModels:
    plugin_name = "standin_models"

    @hookimpl
    def visplay_load_policy(self, ctx: Any, role: str, init_from: str | None) -> Any:
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
        return Reinforce(policy, float(ctx.recipe.optimizer.lr))


# --- algorithm -----------------------------------------------------------------------------------------------


def _params(section: Any, n: int, seed: int) -> SamplingParams:
    s = section.sampling
    return SamplingParams(n=n, temperature=s.temperature, max_new_tokens=s.max_new_tokens, seed=seed)


class StandinAlgorithm:
    plugin_name = "standin_algorithm"

    @hookimpl
    def visplay_generate_questions(self, ctx, sampler, images, n, seeds):
        prompts = [Prompt(user="Ask a question about the image.", image=img) for img in images]
        return sampler.sample(prompts, [_params(ctx.recipe.questioner, n, s) for s in seeds])

    @hookimpl
    def visplay_sample_answers(self, ctx, sampler, questions, n, seeds, purpose):
        prompts = [Prompt(user=q, image=img) for img, q in questions]
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
            return [v * max(u, 0.0) for v, u in zip(components["valid"], components["uncertainty"])]
        return components["accuracy"]

    @hookimpl
    def visplay_filter_questions(self, ctx, items):
        low, high = ctx.recipe.reasoner.filter.band
        return [FilterDecision(keep=low <= i.vote.confidence <= high, reason="kept" if low <= i.vote.confidence
                               <= high else "confidence_out_of_band") for i in items]


class Killer:
    """SIGKILLs this process at ``VISPLAY_TEST_KILL=iteration:phase:step:where`` (a real crash, no cleanup)."""

    plugin_name = "standin_killer"

    def __init__(self, spec: str | None):
        self.at = None
        if spec:
            it, phase, step, where = spec.split(":")
            self.at = (int(it), phase, int(step), where)

    def _maybe(self, ctx: Any, where: str) -> None:
        if self.at == (ctx.iteration, ctx.phase, ctx.step, where):
            os.kill(os.getpid(), signal.SIGKILL)

    @hookimpl(tryfirst=True)
    def visplay_sample_answers(self, ctx, sampler, questions, n, seeds, purpose):
        self._maybe(ctx, "sample")

    @hookimpl
    def visplay_log_metrics(self, ctx, iteration, phase, step, metrics):
        self._maybe(ctx, "commit")


def standin_plugins(kill: str | None = None) -> tuple[Any, ...]:
    import visplay_images.plugin as images

    return (images, StandinModels(), StandinAlgorithm(), Killer(kill))


def standin_recipe(run_dir: Path, extra: list[str] = ()):
    from visplay.config import load_recipe

    return load_recipe("tiny", [*STANDIN_OVERRIDES, f"run_dir={run_dir}", *extra])


def comparable_rows(db_path: Path) -> dict[str, list[tuple]]:
    """Every table's rows, timestamps and the resume event left out, for run-to-run equality."""
    from visplay.log.runlog import VOLATILE_COLUMNS, RunLog

    out = {}
    with RunLog(db_path, readonly=True) as log:
        for table in log.tables():
            if table.startswith("sqlite_"):
                continue
            rows = log.rows(table)
            if table == "events":
                rows = [r for r in rows if r["kind"] != "run_resumed"]
                rows = [{k: v for k, v in r.items() if k != "id"} for r in rows]
            out[table] = [tuple(sorted((k, v) for k, v in r.items() if k not in VOLATILE_COLUMNS)) for r in rows]
    return out


def main(argv: list[str]) -> int:
    os.environ["VISPLAY_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    torch.set_num_threads(1)
    from visplay.loop.engine import run_recipe

    command, run_dir, overrides = argv[0], Path(argv[1]), argv[2:]
    plugins = standin_plugins(os.environ.get("VISPLAY_TEST_KILL"))
    if command == "run":
        run_recipe(standin_recipe(run_dir, overrides), extra_plugins=plugins, quiet=True)
    else:
        from visplay.config import load_recipe

        run_recipe(load_recipe(str(run_dir / "recipe.yaml")), run_dir=run_dir, resume=True, extra_plugins=plugins,
                   quiet=True)
    print(json.dumps({"done": str(run_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
