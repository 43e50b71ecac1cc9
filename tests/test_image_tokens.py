"""Image tokens counted by the reader's own processor (no engine): the tiny Qwen2.5-VL of the demo
world (smart-resize to 28-pixel merged patches within min/max pixels) and a tiny LLaVA (a fixed
patch count); the counts equal the processor's own expansion of the prompt, and fitting keeps
every prompt within the context.

Hand-worked Qwen2.5-VL counts (factor 28, min 4 x 784, max 64 x 784 pixels, as the fixture
saves them):
- 64 x 48: each side rounds to 56; 56 x 56 = 3,136 pixels >= min: (56/28)^2 = 4 tokens;
- 640 x 480: rounded 644 x 476 = 306,544 > max, so beta = sqrt(307,200 / 50,176) = 2.474 and
  the sides are floored: 640/2.474/28 -> 9, 480/2.474/28 -> 6: 9 x 6 = 54 tokens;
- the same 640 x 480 at max_pixels 16 x 784: beta = 4.949, sides 4 and 3: 12 tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ragvqa.errors import UserError
from ragvqa.generate.context import (
    chat_token_counter,
    fit_prompt,
    image_size,
    image_token_counter,
    template_messages,
)
from ragvqa.prompts import PromptLibrary
from ragvqa.types import Passage, RetrievedPassage

LIBRARY = PromptLibrary()
SHORT = LIBRARY.get("answer/evidence_short@1")  # the default pipeline's template
BARE = LIBRARY.get("answer/no_retrieval@1")


@pytest.fixture(scope="module")
def qwen(world):
    from transformers import AutoProcessor, AutoTokenizer

    folder = world["root"] / "models" / "reader"
    return AutoProcessor.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("images")
    out = {}
    for name, size in {"small": (64, 48), "large": (640, 480), "tall": (48, 64)}.items():
        out[name] = str(folder / f"{name}.png")
        Image.new("RGB", size, "red").save(out[name])
    # a phone portrait: stored 640 x 480, EXIF orientation 6 (turn by 90 degrees)
    rotated = Image.new("RGB", (64, 48), "blue")
    exif = rotated.getexif()
    exif[0x0112] = 6
    out["portrait"] = str(folder / "portrait.jpg")
    rotated.save(out["portrait"], exif=exif)
    return out


def _processor_length(processor, tokenizer, prompt) -> int:
    """The prompt's length as transformers feeds it to the model: chat template, then the
    processor's own expansion of each image."""
    text = tokenizer.apply_chat_template(
        template_messages(prompt), add_generation_prompt=True, tokenize=False
    )
    pictures = [Image.open(i).convert("RGB") for i in prompt.images()]
    inputs = processor(text=[text], images=pictures or None)
    return len(inputs["input_ids"][0])


def test_qwen_image_tokens_follow_the_processor_by_size(qwen, images):
    processor, _ = qwen
    extra = image_token_counter(processor)  # beyond the one <|image_pad|> placeholder
    assert extra(images["small"]) == 4 - 1
    assert extra(images["large"]) == 54 - 1
    smaller = image_token_counter(processor, {"max_pixels": 16 * 28 * 28})
    assert smaller(images["large"]) == 12 - 1  # the pipeline's mm_processor_kwargs count


@pytest.mark.parametrize("error", [NotImplementedError, AttributeError, TypeError, KeyError])
def test_a_processor_without_a_count_from_size_is_counted_on_a_blank_image(
    qwen, images, monkeypatch, error
):
    """Processors that lack transformers' `_get_num_multimodal_tokens` (or take other
    arguments) raise one of these; the count then comes from expanding a blank image of the
    same size, and equals the processor's own count (4, 54 and 12 tokens, as above)."""
    processor, _ = qwen

    def missing(*args, **kwargs):
        raise error("no count from a size")

    monkeypatch.setattr(processor, "_get_num_multimodal_tokens", missing)
    assert image_token_counter(processor)(images["small"]) == 4 - 1
    assert image_token_counter(processor)(images["large"]) == 54 - 1
    smaller = image_token_counter(processor, {"max_pixels": 16 * 28 * 28})
    assert smaller(images["large"]) == 12 - 1


def test_a_prompt_counts_what_the_processor_feeds_the_model(qwen, images):
    processor, tokenizer = qwen
    count = chat_token_counter(tokenizer, image_token_counter(processor))
    passages = [RetrievedPassage(Passage("p", "built in 1345 by the bishop", title="T"), 1.0, 0)]
    for name in ("small", "large", "tall"):
        prompt = SHORT.render(question="when was it built?", passages=passages, image=images[name])
        assert count(prompt) == _processor_length(processor, tokenizer, prompt), name
    small = SHORT.render(question="q", passages=passages, image=images["small"])
    large = SHORT.render(question="q", passages=passages, image=images["large"])
    assert count(large) - count(small) == 54 - 4


def test_exif_orientation_is_applied_before_counting(images):
    assert image_size(images["portrait"]) == (64, 48)  # (height, width): turned upright
    assert image_size(images["small"]) == (48, 64)


def test_llava_counts_its_fixed_patch_grid(tmp_path_factory, images):
    from transformers import AutoProcessor

    from ragvqa.fixtures.models import tiny_llava

    folder = tiny_llava(tmp_path_factory.mktemp("llava") / "model")
    processor = AutoProcessor.from_pretrained(folder)
    extra = image_token_counter(processor)
    # 32 x 32 pixels in 8-pixel patches: 16, plus the CLS token ("full" features): 17
    assert extra(images["small"]) == extra(images["large"]) == 17 - 1
    count = chat_token_counter(processor.tokenizer, extra)
    prompt = BARE.render(question="when?", image=images["large"])
    assert count(prompt) == _processor_length(processor, processor.tokenizer, prompt)


def test_fitting_keeps_every_prompt_within_the_context(qwen, images):
    processor, tokenizer = qwen
    count = chat_token_counter(tokenizer, image_token_counter(processor))
    template = LIBRARY.get("answer/evidence_fallback@1")
    passages = [
        RetrievedPassage(Passage(f"p{i}", "the bridge over the river " * 6, title=f"T{i}"), 1, i)
        for i in range(4)
    ]
    for name in ("small", "large"):

        def render(kept, name=name):
            return template.render(question="which river?", passages=kept, image=images[name])

        for context in (count(render(passages)) + 8, count(render(passages[:1])) + 8, 300):
            prompt = fit_prompt(render, passages, count, context, max_tokens=8)
            assert _processor_length(processor, tokenizer, prompt) <= context - 8
    # the large image takes 50 tokens more: at the same context it keeps less evidence
    context = count(template.render(question="which river?", passages=passages[:3],
                                    image=images["small"])) + 8  # fmt: skip

    def fitted(name: str):
        def render(kept):
            return template.render(question="which river?", passages=kept, image=images[name])

        return fit_prompt(render, passages, count, context, max_tokens=8)

    assert fitted("small").truncated_passages == 1
    assert fitted("large").truncated_passages > 1


def test_image_limits_and_text_readers_are_one_line_errors(qwen, images, tmp_path: Path):
    processor, tokenizer = qwen
    prompt = BARE.render(question="q", image=images["small"])
    with pytest.raises(UserError, match=r"2 images, the reader takes 1 .*limit_mm_per_prompt"):
        two = type(prompt)(prompt.messages * 2, prompt.template)
        chat_token_counter(tokenizer, image_token_counter(processor), limit_images=1)(two)
    with pytest.raises(UserError, match="the reader reads no images"):
        chat_token_counter(tokenizer)(prompt)
    missing = BARE.render(question="q", image=str(tmp_path / "gone.jpg"))
    with pytest.raises(UserError, match="image not found"):
        chat_token_counter(tokenizer, image_token_counter(processor))(missing)
