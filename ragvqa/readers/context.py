"""Fitting a prompt into the reader's context window, by a stated rule.

Rule: while the rendered prompt plus `max_tokens` of answer is longer than the context, drop the
lowest-ranked passage; when one passage is left and it is still too long, cut its text to the
words that fit. The number of passages dropped or cut is recorded in the prompt
(`ChatPrompt.truncated_passages`), so a report can show which answers read less evidence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ragvqa.errors import UserError
from ragvqa.readers.base import EXIF_ORIENTATION, plain_text
from ragvqa.types import ChatPrompt, ImagePart, RetrievedPassage


def chat_token_counter(
    tokenizer: Any,
    image_tokens: Callable[[str], int] | None = None,
    *,
    layout: str = "chat",
    limit_images: int | None = None,
    chat_template: str | None = None,
) -> Callable[[ChatPrompt], int]:
    """Counts a prompt's tokens as the reader will see them.

    Chat layout: the messages through the tokenizer's chat template, images as `{"type":
    "image"}` parts (so the template's own image markers are counted), plus what each image adds
    beyond its one placeholder token, as the reader's processor says (`image_tokens`). Plain
    layout: the text as it is, with the tokenizer's own special tokens (no images).
    `limit_images`: more images than this in one prompt is an error (vLLM's
    `limit_mm_per_prompt`), said before the engine is asked. `chat_template`: another template
    than the tokenizer's (the processor's, which vLLM prefers)."""

    def count(prompt: ChatPrompt) -> int:
        if layout == "plain":
            return len(tokenizer(plain_text(prompt))["input_ids"])
        images = prompt.images()
        if limit_images is not None and len(images) > limit_images:
            raise UserError(
                f"template {prompt.template}: the prompt has {len(images)} images, the reader "
                f"takes {limit_images} (reader.generator.limit_mm_per_prompt)"
            )
        if images and image_tokens is None:
            raise UserError(f"template {prompt.template}: the reader reads no images")
        text = tokenizer.apply_chat_template(
            template_messages(prompt),
            add_generation_prompt=True,
            tokenize=False,
            chat_template=chat_template,
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return len(ids) + sum(image_tokens(image) for image in images) if images else len(ids)

    return count


def reader_token_counter(generator: Any) -> Callable[[ChatPrompt], int] | None:
    """The token counter of a reader that can count (it has a `tokenizer()`; vLLM and
    transformers readers do, an HTTP reader does not), built on its first use. Images are
    counted by the reader's `hf_processor()` with its `mm_kwargs`; the chat template is the
    processor's when it has one, else the tokenizer's: the one vLLM and transformers apply."""
    tokenizer = getattr(generator, "tokenizer", None)
    if not callable(tokenizer):
        return None
    built: list[Callable[[ChatPrompt], int]] = []

    def count(prompt: ChatPrompt) -> int:
        if not built:
            built.append(_build_counter(generator, tokenizer()))
        return built[0](prompt)

    return count


def _build_counter(generator: Any, tokenizer: Any) -> Callable[[ChatPrompt], int]:
    layout = getattr(generator, "layout", "chat")
    limit = getattr(generator, "image_limit", None)
    if not callable(getattr(generator, "hf_processor", None)):
        return chat_token_counter(tokenizer, layout=layout, limit_images=limit)
    processor = generator.hf_processor()
    template = getattr(processor, "chat_template", None) or None
    images = (
        image_token_counter(processor, getattr(generator, "mm_kwargs", {}))
        if getattr(processor, "image_token", None)
        else None
    )
    return chat_token_counter(
        tokenizer, images, layout=layout, limit_images=limit, chat_template=template
    )


def template_messages(prompt: ChatPrompt) -> list[dict[str, Any]]:
    """The messages as a Hugging Face chat template reads them: a text-only message as a string
    (what `openai_messages` sends), a message with images as text and `{"type": "image"}` parts."""
    out = []
    for message in prompt.messages:
        if not any(isinstance(p, ImagePart) for p in message.parts):
            out.append({"role": message.role, "content": message.text})
            continue
        parts = [
            {"type": "image"} if isinstance(p, ImagePart) else {"type": "text", "text": p.text}
            for p in message.parts
        ]
        out.append({"role": message.role, "content": parts})
    return out


def image_token_counter(
    processor: Any, mm_kwargs: dict[str, Any] | None = None
) -> Callable[[str], int]:
    """What one image adds to a prompt beyond its placeholder token, in tokens, as the reader's
    own Hugging Face processor computes it from the image's size (after EXIF orientation, as vLLM
    and ragvqa read images) and `mm_kwargs` (vLLM's `mm_processor_kwargs`, e.g. Qwen2.5-VL's
    `min_pixels` / `max_pixels`): for Qwen2.5-VL the smart-resized image's 28-pixel merged
    patches, for LLaVA the vision tower's patch count. Counts are kept per image size.
    A processor that cannot count from a size is run on a blank image of that size instead."""
    kwargs = dict(mm_kwargs or {})
    placeholder = getattr(processor, "image_token", None)
    if placeholder is None:
        raise UserError(f"the reader's processor ({type(processor).__name__}) reads no images")
    by_size: dict[tuple[int, int], int] = {}

    def count(image: str) -> int:
        size = image_size(image)  # (height, width)
        if size not in by_size:
            by_size[size] = _placeholder_tokens(processor, placeholder, size, kwargs) - 1
        return by_size[size]

    return count


def _placeholder_tokens(
    processor: Any, placeholder: str, size: tuple[int, int], kwargs: dict[str, Any]
) -> int:
    """How many tokens one image of `size` (height, width) becomes."""
    # transformers' own count from a size, where the processor implements it; processors
    # without it (or with another signature) raise these, and the blank image below counts
    with contextlib.suppress(NotImplementedError, AttributeError, TypeError, KeyError):
        data = processor._get_num_multimodal_tokens(image_sizes=[size], **kwargs)
        return int(data.num_image_tokens[0])
    from PIL import Image

    tokenizer = getattr(processor, "tokenizer", processor)
    blank = Image.new("RGB", (size[1], size[0]))
    expanded = processor(text=[placeholder], images=[blank], **kwargs)["input_ids"][0]
    alone = tokenizer(placeholder, add_special_tokens=False)["input_ids"]
    return len(expanded) - len(alone) + 1


def image_size(image: str) -> tuple[int, int]:
    """(height, width) of an image (a file or a data URI) as readers see it: EXIF orientation
    applied, as vLLM and `image_data_uri` do. Reads the header only."""
    import base64
    import io

    from PIL import Image

    if image.startswith(("http://", "https://")):
        raise UserError(f"cannot count the tokens of an image by URL ({image}): use a local file")
    source: Any = image
    if image.startswith("data:"):
        source = io.BytesIO(base64.b64decode(image.split(",", 1)[1]))
    try:
        with Image.open(source) as img:
            width, height = img.size
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except FileNotFoundError:
        raise UserError("image not found", path=image) from None
    except OSError as exc:
        raise UserError(f"cannot read image ({exc})", path=image) from None
    # orientations 5 to 8 turn the image by 90 degrees
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def fit_prompt(
    render: Callable[[Sequence[RetrievedPassage]], ChatPrompt],
    passages: Sequence[RetrievedPassage],
    count_tokens: Callable[[ChatPrompt], int],
    context: int,
    max_tokens: int,
) -> ChatPrompt:
    """The prompt rendered with as much evidence as fits `context - max_tokens` tokens."""
    budget = context - max_tokens
    kept = list(passages)
    prompt = render(kept)
    while count_tokens(prompt) > budget and len(kept) > 1:
        kept.pop()
        prompt = render(kept)
    if count_tokens(prompt) > budget and kept:
        words = kept[0].passage.text.split()
        low, high = 0, len(words)
        while low < high:  # the most words that still fit
            mid = (low + high + 1) // 2
            cut = replace(kept[0], passage=replace(kept[0].passage, text=" ".join(words[:mid])))
            if count_tokens(render([cut])) <= budget:
                low = mid
            else:
                high = mid - 1
        kept = [replace(kept[0], passage=replace(kept[0].passage, text=" ".join(words[:low])))]
        prompt = render(kept)
        dropped = len(passages)
    else:
        dropped = len(passages) - len(kept)
    if count_tokens(prompt) > budget:
        raise UserError(
            f"the prompt needs {count_tokens(prompt)} tokens without evidence, the context "
            f"leaves {budget} (context {context} - max_tokens {max_tokens})"
        )
    return replace(prompt, truncated_passages=dropped)
