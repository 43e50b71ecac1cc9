"""Images through vLLM (in-process and `vllm serve`) into the default pipeline's architecture,
checked against transformers.

The demo world's reader is a tiny random Qwen2.5-VL; a tiny LLaVA (saved in the key layout of
real llava-hf checkpoints) is the second family. For a red and a blue image, vLLM in-process and
transformers see the same prompt (same token count, image tokens included, which is also what
ragvqa's own count says) and generate the same token ids greedily; the two colours' outputs
differ, so the pixels reach the language model. One engine per model per test session.
"""

from __future__ import annotations

import pytest
from conftest import wait_for_memory

from ragvqa.generate.base import Sampling, openai_messages
from ragvqa.generate.context import reader_token_counter
from ragvqa.prompts import PromptLibrary
from ragvqa.types import Passage, RetrievedPassage

LIBRARY = PromptLibrary()
SHORT = LIBRARY.get("answer/evidence_short@1")  # the default pipeline's template
EVIDENCE = [RetrievedPassage(Passage("p", "it was consecrated in 1345.", title="T"), 1.0, 0)]


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    from ragvqa.fixtures.models import tiny_llava

    return tiny_llava(tmp_path_factory.mktemp("llava") / "model")


@pytest.fixture(scope="module")
def llava_engine(llava):
    from ragvqa.generate.vllm_backend import VLLMGenerator

    wait_for_memory(0.05)
    engine = VLLMGenerator(
        str(llava),
        dtype="float32",
        max_model_len=512,
        enforce_eager=True,
        gpu_memory_utilization=0.05,
        limit_mm_per_prompt={"image": 1},
    )
    yield engine
    engine.close()


def _vllm_ids(engine, prompt):
    """(prompt token ids, generated ids) from vLLM for the messages ragvqa sends."""
    from vllm import SamplingParams

    [out] = engine.llm.chat(
        [openai_messages(prompt)], SamplingParams(temperature=0, max_tokens=8), use_tqdm=False
    )
    return list(out.prompt_token_ids), list(out.outputs[0].token_ids)


def _transformers_ids(reader, prompt):
    """(prompt token ids, generated ids) from transformers' generate, greedy."""
    import torch

    inputs = reader.inputs(prompt)
    with torch.inference_mode():
        ids = reader.net.generate(**inputs, max_new_tokens=8, do_sample=False)
    length = inputs["input_ids"].shape[1]
    eos = reader.tokenizer().eos_token_id
    new = ids[0, length:].tolist()
    return inputs["input_ids"][0].tolist(), new[: new.index(eos) + 1] if eos in new else new


def _agree(engine, model, colour_images):
    from ragvqa.generate.hf_backend import TransformersGenerator

    reader = TransformersGenerator(str(model), device="cpu")
    count = reader_token_counter(engine)
    generated = {}
    for colour, image in colour_images.items():
        prompt = SHORT.render(question="when was it consecrated?", passages=EVIDENCE, image=image)
        vllm_prompt, vllm_ids = _vllm_ids(engine, prompt)
        hf_prompt, hf_ids = _transformers_ids(reader, prompt)
        assert len(vllm_prompt) == len(hf_prompt) == count(prompt), colour
        assert vllm_prompt == hf_prompt and vllm_ids == hf_ids, colour
        # and through ragvqa's two readers: the same text and prompt length
        [ours] = engine.generate([prompt], Sampling(max_tokens=8))
        [theirs] = reader.generate([prompt], Sampling(max_tokens=8))
        assert (ours.text, ours.prompt_tokens) == (theirs.text, theirs.prompt_tokens), colour
        generated[colour] = vllm_ids
    assert generated["red"] != generated["blue"]  # the pixels reach the language model


def test_qwen2_5_vl_through_vllm_equals_transformers(vllm_engine, reader_model, colour_images):
    _agree(vllm_engine, reader_model, colour_images)


def test_llava_through_vllm_equals_transformers(llava_engine, llava, colour_images):
    _agree(llava_engine, llava, colour_images)


@pytest.fixture(scope="module")
def llava_server(llava, tmp_path_factory):
    from conftest import vllm_server_for

    with vllm_server_for(llava, tmp_path_factory.mktemp("llava-server")) as url:
        yield url


def test_llava_through_vllm_serve_equals_transformers(llava_server, llava, colour_images):
    """The OpenAI path (`vllm serve`) on LLaVA: the prompt's length (image tokens included)
    and the answer equal transformers' for a red and a blue image, which differ."""
    from ragvqa.generate.hf_backend import TransformersGenerator
    from ragvqa.generate.openai_backend import OpenAIGenerator

    prompts = [
        SHORT.render(question="when was it consecrated?", passages=EVIDENCE, image=image)
        for image in colour_images.values()
    ]
    remote = OpenAIGenerator(llava_server, str(llava)).generate(prompts, Sampling(max_tokens=8))
    local = TransformersGenerator(str(llava), device="cpu").generate(
        prompts, Sampling(max_tokens=8)
    )
    assert [(g.text, g.prompt_tokens) for g in remote] == [(g.text, g.prompt_tokens) for g in local]
    assert remote[0].text != remote[1].text


def test_a_text_prompt_costs_the_image_tokens_less(vllm_engine, colour_images):
    """The image's share of the prompt: 4 merged patches for a 64 x 48 image, plus the
    vision start and end markers."""
    with_image = SHORT.render(question="when?", passages=EVIDENCE, image=colour_images["red"])
    text_only = SHORT.render(question="when?", passages=EVIDENCE)
    a, b = vllm_engine.generate([with_image, text_only], Sampling(max_tokens=2))
    assert a.prompt_tokens - b.prompt_tokens == 4 + 2
