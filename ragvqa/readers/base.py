"""What every generation backend shares: sampling settings, OpenAI-style messages, errors.

The vLLM backend and the OpenAI-compatible HTTP backend send the *same* messages: text parts
and image parts, images inlined as base64 data URIs, so a prompt that works against
`vllm serve` works in-process and the other way round. A message with text only is sent as a
plain string, which every chat template accepts (text-only readers included).
"""

from __future__ import annotations

import base64
import io
import mimetypes
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.schema.base import defaults
from ragvqa.schema.components import LAYOUTS
from ragvqa.schema.sections import SamplingSection
from ragvqa.types import ChatPrompt, Generation, ImagePart

_DEFAULT = defaults(SamplingSection)


@dataclass(frozen=True)
class Sampling:
    """Decoding settings (the `reader.sampling` section's, with its defaults); the default is
    greedy (reproducible answers)."""

    temperature: float = _DEFAULT["temperature"]
    top_p: float = _DEFAULT["top_p"]
    max_tokens: int = _DEFAULT["max_tokens"]
    seed: int = _DEFAULT["seed"]
    stop: tuple[str, ...] = tuple(_DEFAULT["stop"])

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


class GenerationError(UserError):
    """Generation failed for some prompts; `completed` holds the ones that succeeded."""

    def __init__(self, message: str, completed: dict[int, Generation]):
        super().__init__(message)
        self.completed = completed


EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how a camera held the picture


def image_data_uri(path: str) -> str:
    """An image file as a data URI: JPEG or PNG bytes as they are; other formats, and images
    whose EXIF orientation turns them, as PNG with the orientation applied (so every reader,
    and the token count, sees the picture upright)."""
    if path.startswith(("data:", "http://", "https://")):
        return path
    file = Path(path)
    if not file.is_file():
        raise UserError("image not found", path=path)
    from PIL import Image, ImageOps

    mime = mimetypes.guess_type(file.name)[0] or ""
    try:
        with Image.open(file) as img:
            upright = img.getexif().get(EXIF_ORIENTATION, 1) == 1
            if mime in ("image/jpeg", "image/png") and upright:
                data = file.read_bytes()
            else:
                buffer = io.BytesIO()
                ImageOps.exif_transpose(img).convert("RGB").save(buffer, format="PNG")
                data, mime = buffer.getvalue(), "image/png"
    except OSError as exc:
        raise UserError(f"cannot read image ({exc})", path=path) from None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def openai_messages(prompt: ChatPrompt) -> list[dict[str, Any]]:
    """OpenAI chat messages for a prompt (the one layout both vLLM paths send)."""
    messages = []
    for message in prompt.messages:
        if not any(isinstance(p, ImagePart) for p in message.parts):
            messages.append({"role": message.role, "content": message.text})
            continue
        content = []
        for part in message.parts:
            if isinstance(part, ImagePart):
                content.append(
                    {"type": "image_url", "image_url": {"url": image_data_uri(part.image)}}
                )
            else:
                content.append({"type": "text", "text": part.text})
        messages.append({"role": message.role, "content": content})
    return messages


def check_layout(layout: str) -> str:
    """`chat` (the model's chat template) or `plain` (the prompt's text as it is: base models,
    which have no chat template and read a continuation prompt)."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown reader layout {layout!r} (chat or plain)")
    return layout


def plain_text(prompt: ChatPrompt) -> str:
    """A prompt as one continuation text for a base model: the messages' texts in order,
    separated by a blank line. A plain layout has no place for an image part."""
    if prompt.images():
        raise UserError(f"template {prompt.template}: a plain-layout reader reads no images")
    texts = [m.text.strip("\n") for m in prompt.messages]
    return "\n\n".join(t for t in texts if t)
