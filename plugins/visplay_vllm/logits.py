"""An engine-wide vLLM logits processor that keeps special tokens out of every sample.

vLLM's per-request way, ``SamplingParams(allowed_token_ids=[...])``, means a list of ~151k ids per request at
Qwen's vocabulary: the list is validated, serialised to the engine core and scattered into a mask row for every
request (measured in docs/scale.md). The forbidden set is the same for every request of an engine (it depends only
on the tokenizer), so it is set once: ``start_engine`` writes ``visplay_forbidden_ids.json`` into the folder the
engine starts from, and vLLM builds this processor in each worker (``LLM(logits_processors=[...])``); it masks the
same columns of every row with -inf, which is what ``allowed_token_ids`` does for the complement. Raw log-probs are
taken before any logits processor, so they are unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

FORBIDDEN_FILE = "visplay_forbidden_ids.json"

try:  # the class must subclass vLLM's interface; importing this module without vLLM still works (tests, docs)
    from vllm.v1.sample.logits_processor import LogitsProcessor as _Base
except ImportError:  # pragma: no cover - the main environment has no vLLM
    _Base = object


def write_forbidden_ids(model_dir: str | Path, ids: list[int]) -> Path:
    """Record the ids an engine started from ``model_dir`` must never sample."""
    path = Path(model_dir) / FORBIDDEN_FILE
    path.write_text(json.dumps(sorted(int(i) for i in ids)))
    return path


class ForbiddenTokens(_Base):  # type: ignore[misc,valid-type]
    """Sets the logits of the ids listed in the model folder's visplay_forbidden_ids.json to -inf, for all rows."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool):
        path = Path(str(vllm_config.model_config.model)) / FORBIDDEN_FILE
        self.ids = torch.tensor(json.loads(path.read_text()) if path.is_file() else [], dtype=torch.long)
        self.device = device
        self.mask: torch.Tensor | None = None

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token is most likely: greedy requests need it too

    def update_state(self, batch_update: Any) -> None:
        pass  # the same for every request: nothing to track

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not len(self.ids):
            return logits
        if self.mask is None or self.mask.shape[-1] != logits.shape[-1]:
            mask = torch.zeros(logits.shape[-1], dtype=torch.bool)
            mask[self.ids[self.ids < logits.shape[-1]]] = True
            self.mask = mask.to(logits.device)
        return logits.masked_fill_(self.mask, float("-inf"))
