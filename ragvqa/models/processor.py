"""Text and image preprocessing for ReT: the CLIP tokenizer (77 tokens) and image processor.

Saved next to ragvqa's checkpoints so they load offline; for official ReT checkpoints they come
from the base CLIP repository named in the checkpoint's config (e.g.
`openai/clip-vit-large-patch14`), or from the checkpoint folder when it holds them.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError, first_line
from ragvqa.images import size_problem

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"


class RetProcessor:
    """Tokenizer + image processor, with the retriever's text length limit."""

    def __init__(self, tokenizer: Any, image_processor: Any, max_length: int = 77):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_length = max_length

    @classmethod
    def load(cls, folder: str | Path, source: str = "", max_length: int = 77) -> RetProcessor:
        """From `folder` when it has the files, else from `source` (a hub id or folder)."""
        from transformers import CLIPImageProcessor, CLIPTokenizer

        folder = Path(folder)
        has_tok = any((folder / f).is_file() for f in TOKENIZER_FILES)
        has_img = (folder / IMAGE_PROCESSOR_FILE).is_file()
        tok_from = str(folder) if has_tok else source
        img_from = str(folder) if has_img else source
        if not tok_from or not img_from:
            raise UserError(
                "no tokenizer / image processor files and no processor_source in the config",
                path=str(folder),
            )
        try:
            tokenizer = CLIPTokenizer.from_pretrained(tok_from)
            image_processor = CLIPImageProcessor.from_pretrained(img_from)
        except OSError as exc:
            first = first_line(exc)
            raise UserError(
                f"cannot load the CLIP tokenizer / image processor from {tok_from!r} ({first}); "
                "offline, save them into the checkpoint folder"
            ) from None
        return cls(tokenizer, image_processor, max_length)

    def check_fits(self, model: Any) -> None:
        """Refuse a tokenizer whose ids the model's text tower cannot embed."""
        vocab = model.text_model.config.vocab_size
        if len(self.tokenizer) > vocab:
            raise UserError(
                f"the tokenizer has {len(self.tokenizer)} tokens, the text tower embeds {vocab}: "
                "they do not belong together"
            )

    def save(self, folder: str | Path) -> None:
        self.tokenizer.save_pretrained(str(folder))
        self.image_processor.save_pretrained(str(folder))

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to the limit, no padding.

        Only the first `max_length` words of a text can reach the limit (CLIP splits text
        into pieces at whitespace and punctuation, and every piece gives at least one token),
        so longer texts are cut there first: the ids are the same, and a Wikipedia section of
        thousands of words is not tokenised whole to keep 77 tokens.
        """
        heads = [_first_words(text, self.max_length) for text in texts]
        return self.tokenizer(heads, truncation=True, max_length=self.max_length, padding=False)[
            "input_ids"
        ]

    def pad(self, ids: list[list[int]]) -> tuple[Any, Any]:
        """(input_ids, attention_mask) tensors padded to the longest sequence of the batch."""
        import torch

        width = max(len(x) for x in ids)
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return input_ids, mask

    def pixels(self, images: list[Any]) -> Any:
        """pixel_values [B, 3, H, W] (float32) for RGB PIL images.

        A CLIP image processor with its standard steps (resize the shortest edge, centre crop,
        rescale, normalise) runs here directly on PIL and numpy, with the same calls and
        arithmetic as transformers' PIL backend, so the values are identical to it and to the
        processor the official ReT checkpoints were trained with, whichever backend
        transformers would pick (its torchvision one resizes slightly differently), and it
        costs a fifth less. Anything else goes through the image processor itself.

        An image beyond `MAX_ASPECT_RATIO`:1 (or the decompression-bomb limit) is a `UserError`
        before any resize: resizing its shortest edge would make a huge image (files are
        refused earlier, by `ragvqa.images.open_image`; this covers images passed in).
        """
        import numpy as np
        import torch
        from PIL import Image

        for image in images:
            if isinstance(image, Image.Image) and (problem := size_problem(*image.size)):
                raise UserError(problem)
        steps = self._clip_steps()
        rgb = all(isinstance(im, Image.Image) and im.mode == "RGB" for im in images)
        if steps is None or not images or not rgb:  # transformers converts other modes
            return self.image_processor(images, return_tensors="pt")["pixel_values"]
        return torch.from_numpy(np.stack([_clip_pixels(image, *steps) for image in images]))

    def _clip_steps(self) -> tuple | None:
        """(shortest edge, crop height, crop width, PIL resample, scale, mean, std) of a
        standard CLIP image processor, else None."""
        import numpy as np

        p = self.image_processor

        def get(mapping: Any, key: str) -> Any:
            if isinstance(mapping, dict):
                return mapping.get(key)
            return getattr(mapping, key, None)

        size, crop = getattr(p, "size", None), getattr(p, "crop_size", None)
        edge, height, width = get(size, "shortest_edge"), get(crop, "height"), get(crop, "width")
        flags = ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
        if not (all(getattr(p, f, False) is True for f in flags) and edge and height and width):
            return None
        if get(size, "height") or get(size, "width") or getattr(p, "do_pad", False):
            return None
        if height > edge or width > edge:  # transformers would pad the crop
            return None
        mean = np.asarray(p.image_mean, dtype=np.float32).reshape(1, 1, -1)
        std = np.asarray(p.image_std, dtype=np.float32).reshape(1, 1, -1)
        if mean.size != 3 or std.size != 3:
            return None
        try:
            resample = int(p.resample)  # PIL's numbering (PILImageResampling)
            scale = float(p.rescale_factor)
        except (TypeError, ValueError):
            return None
        return int(edge), int(height), int(width), resample, scale, mean, std


def _first_words(text: str, count: int) -> str:
    """`text` up to (not including) its `count`+1-th whitespace-separated word, whitespace
    kept as it was."""
    found = _words_pattern(count).match(text)
    return text[: found.end()] if found else text


@functools.lru_cache
def _words_pattern(count: int) -> re.Pattern:
    return re.compile(rf"\s*(?:\S+\s+){{{count}}}")


def _clip_pixels(image: Any, edge: int, height: int, width: int, resample: int, scale, mean, std):
    """One RGB PIL image -> float32 [3, height, width]: shortest edge to `edge` (the longer one
    truncated to an int, as transformers does), centre crop, x * scale (in float64, then
    float32), (x - mean) / std (in float32)."""
    import numpy as np
    from PIL import Image

    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = edge, int(edge * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    resized = np.asarray(image.resize(size, resample=Image.Resampling(resample)))
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    crop = resized[top : top + height, left : left + width]
    rescaled = (crop.astype(np.float64) * scale).astype(np.float32)  # transformers' order
    return ((rescaled - mean) / std).transpose(2, 0, 1).copy()
