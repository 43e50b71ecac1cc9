"""Training pairs for the retriever: JSONL in, tokenised batches out.

One line per (query, positive document) pair:
    {"query": "...", "query_image": "img/q1.jpg", "document": "...",
     "document_image": "img/d1.jpg", "entity_id": "Q42"}
Text or image may be missing on either side (not both); relative image paths are resolved
against `image_root` (default: the JSONL's folder). `entity_id` marks pairs that share an
entity: their documents are positives of each other's queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragvqa.data.fields import get_str
from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl
from ragvqa.models.encode import query_text

FIELDS = ("query", "query_image", "document", "document_image", "entity_id")


@dataclass(frozen=True)
class Pair:
    """One training or evaluation pair."""

    query: str
    query_image: str | None
    document: str
    document_image: str | None
    entity_id: str


def load_pairs(path: str | Path, image_root: str | Path | None = None) -> list[Pair]:
    """Read a pairs JSONL; every pair gets an entity id (its line number when none is given)."""
    root = Path(image_root) if image_root is not None else Path(path).parent
    pairs = []
    for line, obj in iter_jsonl(path):
        text = {k: get_str(obj, k, str(path), line, required=False) for k in FIELDS}
        pair = Pair(
            query=text["query"],
            query_image=str(root / text["query_image"]) if text["query_image"] else None,
            document=text["document"],
            document_image=str(root / text["document_image"]) if text["document_image"] else None,
            entity_id=text["entity_id"] or f"#{line}",
        )
        if not (pair.query or pair.query_image) or not (pair.document or pair.document_image):
            raise UserError(
                "each side needs a text or an image (fields: query, query_image, document, "
                "document_image)",
                path=str(path),
                line=line,
            )
        pairs.append(pair)
    if not pairs:
        raise UserError("no training pairs", path=str(path))
    return pairs


class PairCollator:
    """Turns a list of pairs into model inputs for both sides (images via the encoder's loader).

    Query texts get the model's instruction prefix, as at inference time. Image preprocessing is
    deterministic, so each image's pixel tensor is computed once and kept (up to `cache_mb` of
    tensors, first come first kept): a run makes many passes over the same images, and decoding
    and resizing them again each epoch costs more than the forward pass of a small model. The
    stand-in for a missing image is computed once. The tensors are exactly those of an uncached
    pass, so caching changes no result.
    """

    def __init__(self, processor: Any, instruction: str, load_image: Any, cache_mb: int = 512):
        self.processor, self.instruction, self.load_image = processor, instruction, load_image
        self.budget = cache_mb * 2**20
        self.cached: dict[str | None, tuple[Any, int]] = {}  # path -> (pixels [3, H, W], mask)
        self.used = 0

    def _pixels(self, path: str | None) -> tuple[Any, int]:
        """(pixel tensor [3, H, W], 1 if the image was read else 0) for one image path."""
        hit = self.cached.get(path)
        if hit is not None:
            return hit
        image, present = self.load_image(path)
        if not present and None in self.cached:  # every stand-in is the same black image
            return self.cached[None][0], 0
        entry = (self.processor.pixels([image])[0], present)
        key = path if present else None
        size = entry[0].numel() * entry[0].element_size()
        if self.used + size <= self.budget:
            self.cached[key], self.used = entry, self.used + size
        return entry

    def _side(self, texts: list[str], images: list[str | None]) -> dict[str, Any]:
        import torch

        input_ids, attention_mask = self.processor.pad(self.processor.token_ids(texts))
        loaded = [self._pixels(p) for p in images]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": torch.stack([pixels for pixels, _ in loaded]),
            "text_mask": torch.tensor([1.0 if t else 0.0 for t in texts]),
            "image_mask": torch.tensor([float(m) for _, m in loaded]),
        }

    def __call__(self, pairs: list[Pair]) -> dict[str, Any]:
        return {
            "query": self._side(
                [query_text(p.query, self.instruction) for p in pairs],
                [p.query_image for p in pairs],
            ),
            "document": self._side([p.document for p in pairs], [p.document_image for p in pairs]),
            "labels": [p.entity_id for p in pairs],
        }
