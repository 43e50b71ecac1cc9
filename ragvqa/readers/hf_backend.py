"""transformers `generate()`: for CPU experiments and small models.

Loads an image-text-to-text model with its processor (e.g. LLaVA) or a text-only causal LM with
its tokenizer, formats each prompt with the model's chat template (images as PIL images in the
messages) or, with `layout="plain"`, as one continuation text (base models), and decodes greedily
unless told otherwise. Safetensors only, no remote code.
"""

from __future__ import annotations

import time
from typing import Any

from ragvqa.errors import UserError, first_line
from ragvqa.readers.base import Sampling, check_layout, plain_text
from ragvqa.schema.components import TransformersArgs
from ragvqa.types import ChatPrompt, Generation, ImagePart


class TransformersReader:
    """A transformers model in this process."""

    args = TransformersArgs  # its arguments' schema (ragvqa.registry)

    backend = "transformers"

    def __init__(
        self, model: str, *, device: str | None = None, dtype: Any = None, layout: str = "chat"
    ):
        import torch
        from transformers import (
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        self.model_name = self.model = model
        self.layout = check_layout(layout)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs = {"use_safetensors": True, "trust_remote_code": False}
        if dtype is not None:
            kwargs["dtype"] = dtype
        try:
            try:
                self.net = AutoModelForImageTextToText.from_pretrained(model, **kwargs)
                self.processor = AutoProcessor.from_pretrained(model)
                self.multimodal = True
            except ValueError:  # not an image-text-to-text architecture: a text-only reader
                self.net = AutoModelForCausalLM.from_pretrained(model, **kwargs)
                self.processor = AutoTokenizer.from_pretrained(model)
                self.multimodal = False
        except OSError as exc:
            first = first_line(exc)
            raise UserError(f"cannot load reader {model!r} ({first})") from None
        self.net.to(self.device).eval()

    mm_kwargs: dict[str, Any] = {}  # the processor's own settings apply
    image_limit = None

    def tokenizer(self) -> Any:
        """The tokenizer (with the chat template) that formats this reader's prompts."""
        return getattr(self.processor, "tokenizer", self.processor)

    def hf_processor(self) -> Any:
        return self.processor

    @property
    def context_length(self) -> int | None:
        """The model's `max_position_embeddings` (its text model's, for image-text models)."""
        config = self.net.config
        text = getattr(config, "text_config", None) or config
        return getattr(text, "max_position_embeddings", None)

    def _messages(self, prompt: ChatPrompt) -> list[dict[str, Any]]:
        from PIL import Image, ImageOps

        out = []
        for message in prompt.messages:
            if not self.multimodal:
                out.append({"role": message.role, "content": message.text})
                continue
            content = []
            for part in message.parts:
                if isinstance(part, ImagePart):
                    try:
                        with Image.open(part.image) as img:  # upright, as vLLM reads it
                            upright = ImageOps.exif_transpose(img).convert("RGB")
                    except OSError as exc:
                        raise UserError(f"cannot read image ({exc})", path=part.image) from None
                    content.append({"type": "image", "image": upright})
                else:
                    content.append({"type": "text", "text": part.text})
            out.append({"role": message.role, "content": content})
        return out

    def inputs(self, prompt: ChatPrompt) -> Any:
        """The model's inputs for one prompt (token ids, pixels), on the reader's device: the
        chat template and processor, or for the plain layout the text with the tokenizer's own
        special tokens (BOS)."""
        if self.layout == "plain":
            return self.tokenizer()(plain_text(prompt), return_tensors="pt").to(self.device)
        return self.processor.apply_chat_template(
            self._messages(prompt),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        ).to(self.device)

    def generate(self, prompts: list[ChatPrompt], sampling: Sampling) -> list[Generation]:
        import torch

        out = []
        for prompt in prompts:
            started = time.perf_counter()
            inputs = self.inputs(prompt)
            length = inputs["input_ids"].shape[1]
            torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                ids = self.net.generate(
                    **inputs,
                    max_new_tokens=sampling.max_tokens,
                    do_sample=sampling.temperature > 0,
                    temperature=sampling.temperature if sampling.temperature > 0 else None,
                    top_p=sampling.top_p if sampling.temperature > 0 else None,
                )
            new = ids[0, length:]
            tokenizer = getattr(self.processor, "tokenizer", self.processor)
            eos = tokenizer.eos_token_id
            stopped = len(new) > 0 and int(new[-1]) == eos
            out.append(
                Generation(
                    # an answer cut inside a character ends in U+FFFD here; vLLM's incremental
                    # detokenizer holds those bytes back: drop them, so both readers agree
                    text=tokenizer.decode(new, skip_special_tokens=True).rstrip("\ufffd"),
                    model=self.model,
                    sampling=sampling.as_dict(),
                    prompt_tokens=int(length),
                    completion_tokens=int(len(new)),
                    finish_reason="stop" if stopped else "length",
                    backend=self.backend,
                    seconds=round(time.perf_counter() - started, 4),
                )
            )
        return out


TransformersGenerator = TransformersReader  # the name before issue 24, kept for existing code
