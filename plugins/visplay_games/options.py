"""The games plugin's recipe section, ``plugins.games``, declared through ``visplay_recipe_sections`` (so the
recipe loader validates it at load time, naming the key) and documented by ``visplay recipe --explain``."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from visplay_games.core import DIFFICULTIES
from visplay_games.generators import GAMES, MAX_SIZE, MIN_SIZE


class GamesConfigError(ValueError):
    """A bad ``plugins.games`` setting; the message names the key."""


@dataclass
class GamesOptions:
    """Visual games with known answers: the ``games`` image source, gold evaluation, the perception cold start and
    gold-reward training."""

    games: list[str] = field(default_factory=lambda: list(GAMES))
    """Games in the pools, in order (default all: 2048, shisen, swap, shapes, bars, clock)."""
    difficulties: list[int] = field(default_factory=lambda: list(DIFFICULTIES))
    """Difficulty levels in the pools (1 easy .. 3 hard)."""
    gold_eval: bool | None = None
    """Score the reasoner on the held-out set after every iteration; None: when data.source is games."""
    held_out: int = 12
    """Held-out images for gold evaluation (disjoint from the training pool)."""
    held_out_seed: int = 20251115
    """Root seed of the held-out set: fixed, so every run is scored on the same items."""
    held_out_questions: int = 2
    """Questions per held-out image (cycling through its templated QA pairs)."""
    eval_votes: int = 3
    """Reasoner answers per held-out question, sampled as in the loop: their mean accuracy is pass@1 (sampled),
    their majority's is maj@m (the majority is a silver label in itself)."""
    eval_greedy: bool = True
    """Also answer each held-out question once greedily (temperature 0): pass@1 greedy."""
    cold_start_steps: int = 0
    """The questioner's SFT steps before iteration 1, and the reasoner's unless ``cold_start_reasoner_steps`` is set
    (0 with no reasoner steps: no cold start). The reasoner has its own key: tiny sets both to 300, so
    ``cold_start_steps=0`` alone still runs the reasoner's 300; give ``cold_start_reasoner_steps=0`` too."""
    cold_start_reasoner_steps: int | None = None
    """The reasoner's SFT steps before iteration 1, when they differ from the questioner's; None:
    ``cold_start_steps``."""
    cold_start_lr: float = 1e-3
    """Cold-start SFT learning rate."""
    cold_start_batch_size: int = 8
    """Cold-start SFT pairs per step."""
    cold_start_images: int = 48
    """Fresh images (own seeds) the cold-start pairs are made from."""
    cold_start_think_chars: int = 16
    """How much of the state description the reasoner's cold-start target puts inside <think></think> (short,
    so the boxed answer fits the tiny recipe's response budget)."""
    cold_start_describe: bool = True
    """Also train the reasoner on "Describe the image." -> the state description (perception cold start)."""
    cold_start_cache: bool = True
    """Keep the cold-started weights in a cache keyed by a hash of everything they depend on (base weights,
    pairs, settings; $VISPLAY_CACHE/sft, else ~/.cache/visplay/sft), so later runs load them bit-identically."""
    cold_start_roles: list[str] = field(default_factory=lambda: ["questioner", "reasoner"])
    """Which roles get the cold start."""
    gold_reward: bool = False
    """Train the reasoner on gold: the reasoner's set comes from gold QA pairs and the ``gold_accuracy`` and
    ``game_points`` reward components are returned."""
    gold_questions_per_image: int = 1
    """Gold QA pairs per training image in the reasoner's set when gold_reward is on."""
    full_question_space: bool = False
    """QA pairs over the templates' whole question space, as a self-play questioner asks them: the number at an
    empty 2048 cell, the letter at an empty Shisen-Sho cell, a letter or shape colour that is not there, two tiles
    with different letters (the tiny recipe: true). False keeps the narrower proposals of run logs written before
    issue 15 (occupied cells, present colours, same-letter pairs), so those replay bit for bit; the pictures are
    the same either way."""

    image_size: int = 224
    """Side length (pixels) the games render their pictures at (48..1024)."""

    # before issue 21 the games rendered at the core's data.size (when they were the recipe's source)
    legacy_keys = {"data.size": ("image_size", {"data.source": "games"})}

    def validate(self) -> dict[str, str]:
        """The recipe loader's check of this section (see problems_of)."""
        return problems_of(self)


_INT_MIN = {"held_out": 0, "held_out_questions": 1, "eval_votes": 1, "cold_start_steps": 0,
            "cold_start_batch_size": 1, "cold_start_images": 1,
            "cold_start_think_chars": 0, "gold_questions_per_image": 1, "image_size": MIN_SIZE}


def problems_of(opts: GamesOptions) -> dict[str, str]:
    """{key: problem} of a GamesOptions (the loader reports the first with file and dotted key)."""
    problems: dict[str, str] = {}
    if not opts.games or any(g not in GAMES for g in opts.games):
        problems["games"] = f"must be a non-empty list of {list(GAMES)}, got {opts.games}"
    if not opts.difficulties or any(d not in DIFFICULTIES for d in opts.difficulties):
        problems["difficulties"] = f"must be a non-empty list of {list(DIFFICULTIES)}, got {opts.difficulties}"
    for key, low in _INT_MIN.items():
        value = getattr(opts, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems[key] = f"must be an integer >= {low}, got {value!r}"
    if isinstance(opts.image_size, int) and opts.image_size > MAX_SIZE:
        problems["image_size"] = f"must be <= {MAX_SIZE} pixels, got {opts.image_size}"
    steps = opts.cold_start_reasoner_steps
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        problems["cold_start_reasoner_steps"] = f"must be an integer >= 0, got {steps!r}"
    if not isinstance(opts.cold_start_lr, (int, float)) or not opts.cold_start_lr > 0:
        problems["cold_start_lr"] = f"must be > 0, got {opts.cold_start_lr!r}"
    if any(r not in ("questioner", "reasoner") for r in opts.cold_start_roles):
        problems["cold_start_roles"] = f"roles are questioner and reasoner, got {opts.cold_start_roles}"
    for key in ("gold_reward", "cold_start_describe", "eval_greedy", "cold_start_cache", "full_question_space"):
        if not isinstance(getattr(opts, key), bool):
            problems[key] = "must be true or false"
    return problems


def parse_options(raw: dict[str, Any] | None) -> GamesOptions:
    """Validate ``plugins.games`` given as a plain dict (scripts, tests) into GamesOptions."""
    raw = dict(raw or {})
    known = {f.name for f in fields(GamesOptions)}
    for key in raw:
        if key not in known:
            raise GamesConfigError(f"plugins.games.{key}: unknown key (known: {', '.join(sorted(known))})")
    if isinstance(raw.get("games"), (list, tuple)):
        raw["games"] = [str(g) for g in raw["games"]]  # YAML reads the game 2048 as an integer
    opts = GamesOptions(**raw)
    for key, problem in problems_of(opts).items():
        raise GamesConfigError(f"plugins.games.{key}: {problem}")
    return opts
