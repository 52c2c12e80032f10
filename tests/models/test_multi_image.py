"""Prompts with several images: the processors put each image's tokens at its place and carry every image's pixels
and grid, the forward and sampling paths give each image its own positions (issue 23).

The reference is transformers' own ``Qwen2_5_VLProcessor`` on the same chat and images, and the model's own
forward (it computes the multimodal rotary positions itself when given none). That processor class insists on a
torchvision video processor, which has no CPU build for our torch; :class:`_ImagesOnly` skips only that class
check (no video is processed), so the tokenising and placeholder expansion are transformers' code.
"""

from __future__ import annotations

import pytest
import torch
from support.models import image, make_policy, small_cfg

from visplay.types import Prompt, SamplingParams

IDEFICS3_TOKENS = 4  # a 64 x 64 tile in 16-px patches, pixel shuffle 2 (tiny_families.py)
IMAGES = (image(1), image(2, 84), image(3, 112))  # 56, 84 and 112 px: 4, 9 and 16 image tokens
MMMU_LIKE = "Which of <image> and <image> matches <image>?\nA. the first\nB. the second"
CHAT = [{"type": "text", "text": "Which of "}, {"type": "image"}, {"type": "text", "text": " and "},
        {"type": "image"}, {"type": "text", "text": " matches "}, {"type": "image"},
        {"type": "text", "text": "?\nA. the first\nB. the second"}]


@pytest.fixture(scope="module")
def policy():
    torch.set_num_threads(1)
    return make_policy()


def _reference_processor(proc):
    from transformers import Qwen2_5_VLProcessor

    class _ImagesOnly(Qwen2_5_VLProcessor):
        def check_argument_for_proper_class(self, name, arg):
            if name != "video_processor":
                return super().check_argument_for_proper_class(name, arg)
            return None

    return _ImagesOnly(image_processor=proc.image_processor, tokenizer=proc.tokenizer, video_processor=None,
                       chat_template=proc.tokenizer.chat_template)


def _reference(proc, content, images):
    ref = _reference_processor(proc)
    text = ref.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
    return ref(text=[text], images=[r.image.convert("RGB") for r in images], return_tensors="pt")


def test_interleaved_prompt_equals_transformers_processor(policy):
    proc = policy.processor
    enc = proc.encode(Prompt(user=MMMU_LIKE, images=IMAGES, interleaved=True))
    ref = _reference(proc, CHAT, IMAGES)
    assert enc.input_ids == ref["input_ids"][0].tolist()
    assert torch.equal(enc.pixel_values, ref["pixel_values"])
    assert enc.image_grid_thw.tolist() == ref["image_grid_thw"].tolist() == [[1, 4, 4], [1, 6, 6], [1, 8, 8]]
    runs = _image_runs(enc.input_ids, proc.image_token_id)
    assert [n for _, n in runs] == [4, 9, 16]
    text = proc.tokenizer.decode(enc.input_ids[runs[0][0] + 4:runs[1][0]])
    assert text == "<|vision_end|> and <|vision_start|>"  # image 2 sits where the second tag was


def test_one_image_prompts_are_encoded_as_before(policy):
    """``image=`` alone is the prompt it always was: the image part, then the text (transformers on that chat)."""
    proc = policy.processor
    prompt = Prompt(user="How many red circles are there?", image=IMAGES[0])
    assert prompt.images == (IMAGES[0],) and prompt.parts() == [0, "How many red circles are there?"]
    ref = _reference(proc, [{"type": "image"}, {"type": "text", "text": prompt.user}], IMAGES[:1])
    assert proc.encode(prompt).input_ids == ref["input_ids"][0].tolist()


def _image_runs(ids: list[int], token: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i, t in enumerate(ids):
        if t == token and (not runs or runs[-1][0] + runs[-1][1] != i):
            runs.append((i, 0))
        if t == token:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
    return runs


def test_positions_and_logprobs_equal_the_models_own_forward(policy):
    """Our explicit mrope positions in a padded batch (a 3-image row, a 1-image row, a text row) give the log-probs
    the model computes from transformers' processor output with its own positions."""
    from visplay_models.forward import inner_model, make_batch

    proc, hf = policy.processor, inner_model(policy.model)
    prompts = [Prompt(user=MMMU_LIKE, images=IMAGES, interleaved=True),
               Prompt(user="How many?", image=IMAGES[1]), Prompt(user="What is 2 + 3?")]
    response = proc.tokenizer("B, the second one.", add_special_tokens=False)["input_ids"]
    batched = policy.logprobs(prompts, [response] * 3, temperature=1.0)
    ref = _reference(proc, CHAT, IMAGES)
    ids = torch.cat([ref["input_ids"], torch.tensor([response])], dim=1)
    types = torch.cat([ref["mm_token_type_ids"], torch.zeros(1, len(response), dtype=torch.long)], dim=1)
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=types,
                 pixel_values=ref["pixel_values"], image_grid_thw=ref["image_grid_thw"])
    start = ref["input_ids"].shape[1]
    logp = torch.log_softmax(out.logits[0, start - 1:-1].float(), dim=-1)
    own = logp.gather(-1, torch.tensor(response)[:, None])[:, 0]
    assert torch.allclose(batched[0], own, atol=1e-5), (batched[0] - own).abs().max()
    # each image gets its own 3-D block: the text after image k continues at that block's largest position + 1
    encs = [proc.encode(p) for p in prompts]
    batch = make_batch(hf, proc, encs, [response] * 3, torch.device("cpu"), torch.float32)
    pos = batch.position_ids[:, 0]
    for first, n in _image_runs(encs[0].input_ids, proc.image_token_id):
        assert int(pos[0, first]) == int(pos[0, first - 1]) + 1
        assert int(pos[:, first + n].min()) == int(pos[:, first:first + n].max()) + 1
    assert batch.image_grid_thw.tolist() == [[1, 4, 4], [1, 6, 6], [1, 8, 8], [1, 6, 6]]


def test_multi_image_samples_match_teacher_forcing_and_ignore_the_batch(policy):
    prompt = Prompt(user=MMMU_LIKE, images=IMAGES, interleaved=True)
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=5)
    sampler = policy.sampler()
    alone = sampler.sample([prompt], [params])[0]
    together = sampler.sample([Prompt(user="What is 2 + 3?"), prompt], [params, params])[1]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    lps = policy.logprobs([prompt, prompt], [g.token_ids for g in alone], temperature=1.0)
    for lp, g in zip(lps, alone):
        assert torch.allclose(lp, torch.tensor(g.logprobs), atol=1e-4)


def test_prompt_refuses_a_tag_count_that_does_not_match_its_images():
    with pytest.raises(ValueError, match="one <image> per image in its user text; 3 image"):
        Prompt(user="only <image> here", images=IMAGES, interleaved=True)
    with pytest.raises(ValueError, match="image= is the first of images="):
        Prompt(user="q", image=IMAGES[1], images=IMAGES)
    assert Prompt(user="a <image>b", images=IMAGES[:1], interleaved=True).parts() == ["a ", 0, "b"]
    assert Prompt(user="<image><image>", images=IMAGES[:2], interleaved=True).parts() == [0, 1]


def test_idefics3_gets_every_image_at_its_place():
    """Another family (Idefics3, through its own processor): three images, three blocks of image tokens in order,
    pixel tensors for the three, and batched log-probs equal to the sampler's."""
    from visplay_models.policy import load_policy
    from visplay_models.tiny import build_tiny_model

    torch.set_num_threads(1)
    policy = load_policy(build_tiny_model(small_cfg(architecture="idefics3"), seed=0), "reasoner",
                         keep_reference=None)
    proc = policy.processor
    prompt = Prompt(user=MMMU_LIKE, images=IMAGES, interleaved=True)
    enc = proc.encode(prompt)
    assert enc.pixel_values.shape[0] == 3
    runs = _image_runs(enc.input_ids, proc.image_token_id)
    assert [n for _, n in runs] == [IDEFICS3_TOKENS] * 3
    between = proc.tokenizer.decode(enc.input_ids[runs[0][0] + runs[0][1]:runs[1][0]])
    assert " and " in between
    params = SamplingParams(n=1, temperature=1.0, max_new_tokens=6, seed=2)
    (gen,), (other,) = policy.sampler().sample([prompt, Prompt(user="Hi", image=IMAGES[0])], [params, params])
    lps = policy.logprobs([Prompt(user="Hi", image=IMAGES[0]), prompt], [other.token_ids, gen.token_ids],
                          temperature=1.0)
    assert torch.allclose(lps[1], torch.tensor(gen.logprobs), atol=1e-4)
    assert torch.allclose(lps[0], torch.tensor(other.logprobs), atol=1e-4)


def test_qwen3_vl_samples_a_three_image_prompt_as_it_scores_it():
    """Qwen3-VL (16-px patches, its own get_rope_index): three grids, three blocks, sampler == teacher forcing."""
    torch.set_num_threads(1)
    policy = make_policy(architecture="qwen3_vl")
    prompt = Prompt(user=MMMU_LIKE, images=IMAGES, interleaved=True)
    enc = policy.processor.encode(prompt)
    # 56, 84 and 112 px round to 64, 96 and 128 (multiples of patch 16 x merge 2)
    assert enc.image_grid_thw.tolist() == [[1, 4, 4], [1, 6, 6], [1, 8, 8]]
    assert [n for _, n in _image_runs(enc.input_ids, policy.processor.image_token_id)] == [4, 9, 16]
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=6, seed=9)
    (gens,) = policy.sampler().sample([prompt], [params])
    lps = policy.logprobs([prompt, prompt], [g.token_ids for g in gens], temperature=1.0)
    for lp, g in zip(lps, gens):
        assert torch.allclose(lp, torch.tensor(g.logprobs), atol=1e-4)
