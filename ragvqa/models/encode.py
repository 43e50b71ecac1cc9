"""High-level encoding: `VQAQuery`s and `Passage`s to float32 vectors.

Does what every caller would otherwise repeat: the query instruction prefix, tokenisation
(77 tokens), image loading and preprocessing (in a thread pool), the black-image / empty-text
masks for a missing modality, length-sorted batching (little padding), `inference_mode`, the
model's device and dtype, and a progress bar on stderr for long inputs. Missing and unreadable
images are counted in `stats`, never fatal.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragvqa.images import open_image
from ragvqa.models.checkpoint import load_retriever
from ragvqa.models.processor import RetProcessor
from ragvqa.progress import ProgressBar
from ragvqa.types import Passage, VQAQuery

BLACK_SIZE = 336  # the official code's stand-in for a missing image
SHOW = 5
_LOCK = threading.Lock()


@dataclass
class EncodeStats:
    """What happened to the images of the inputs encoded so far."""

    no_image: int = 0
    missing_images: int = 0
    unreadable_images: int = 0
    examples: dict[str, list[str]] = field(
        default_factory=lambda: {"missing_images": [], "unreadable_images": []}
    )

    def note(self, kind: str, path: str | None = None) -> None:
        with _LOCK:  # images load in worker threads
            setattr(self, kind, getattr(self, kind) + 1)
            if path is not None and len(self.examples[kind]) < SHOW:
                self.examples[kind].append(path)


def load_image(path: str | None, stats: EncodeStats | None = None) -> tuple[Any, int]:
    """(RGB image, 1), or (the black stand-in, 0) when there is no image, it is missing, or it
    cannot be read; the last two are counted in `stats`."""
    from PIL import Image

    black = Image.new("RGB", (BLACK_SIZE, BLACK_SIZE), color="black")
    stats = stats if stats is not None else EncodeStats()
    if path is None:
        stats.note("no_image")
        return black, 0
    if not Path(path).is_file():
        stats.note("missing_images", path)
        return black, 0
    try:
        return open_image(path), 1  # upright (EXIF), size and aspect ratio checked
    except Exception:  # truncated, not an image, too thin, unsupported mode: go on without it
        stats.note("unreadable_images", path)
        return black, 0


def query_text(question: str, instruction: str) -> str:
    """The query text the retriever reads: "<instruction> <question>" (either may be empty)."""
    return f"{instruction} {question}" if instruction and question else instruction or question


class RetEncoder:
    """Encodes queries and documents with a loaded retriever and its processor."""

    kind = "ret"  # ragvqa.models.encoders tells the kinds apart (TextEncoder: "text")

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 64,
        image_workers: int | None = None,
        progress: bool | None = None,
    ):
        """`image_workers`: threads that decode and preprocess images while the model runs
        (default: one per CPU, at most 32). Preprocessing a 1024 x 768 JPEG takes about 8 ms
        of one core, so a GPU encoding thousands of documents a second needs many of them;
        decoding and resizing release the GIL, so threads scale."""
        self.model, self.processor = model, processor
        self.batch_size, self.progress = batch_size, progress
        self.image_workers = image_workers or min(32, os.cpu_count() or 4)
        self.stats = EncodeStats()
        self.last_present: Any = None  # per input of the last call: 1.0 when its image was used

    @classmethod
    def from_pretrained(
        cls, path_or_hub_id: str | Path, *, device: str | None = None, dtype: Any = None, **kw: Any
    ) -> RetEncoder:
        model = load_retriever(path_or_hub_id, device=device, dtype=dtype)
        processor = RetProcessor.load(
            model.source, model.config.processor_source, model.config.max_text_tokens
        )
        processor.check_fits(model)
        return cls(model, processor, **kw)

    def encode_queries(self, queries: Sequence[VQAQuery]) -> Any:
        """float32 array [N, n_vectors, dim] for the queries, in input order."""
        instruction = self.model.config.query_instruction
        texts = [query_text(q.question, instruction) for q in queries]
        return self._encode("query", texts, [q.image_path for q in queries])

    def encode_documents(self, passages: Sequence[Passage]) -> Any:
        """float32 array [N, n_vectors, dim] for the passages (their first image, if any)."""
        texts = [p.text for p in passages]
        images = [p.image_paths[0] if p.image_paths else None for p in passages]
        return self._encode("document", texts, images)

    # -- internals --------------------------------------------------------------------------
    def _prepare(self, path: str | None) -> tuple[Any, float]:
        """One image as pixel values [3, H, W] and its mask (0 for the black stand-in)."""
        image, present = load_image(path, self.stats)
        return self.processor.pixels([image])[0], float(present)

    def _encode(self, side: str, texts: list[str], images: list[str | None]) -> Any:
        import numpy as np
        import torch

        head = self.model.config.head(side)
        out = np.zeros((len(texts), head.output_vectors, head.output_dim), dtype=np.float32)
        self.last_present = np.zeros(len(texts), dtype=np.float32)
        if not texts:
            return out
        ids = self.processor.token_ids(texts)
        # image-less items together (their batches skip the vision tower), then by length
        order = sorted(range(len(texts)), key=lambda i: (images[i] is not None, len(ids[i])))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        device, dtype = self.model.device, self.model.dtype
        # shown for more than a few batches unless told otherwise
        show = self.progress if self.progress is not None else len(texts) > 256
        with (
            ThreadPoolExecutor(self.image_workers) as pool,
            ProgressBar(f"encoding {side}s", len(texts), enabled=show) as bar,
        ):
            # images of the next batch load while the model runs on this one
            submit = lambda batch: [pool.submit(self._prepare, images[i]) for i in batch]  # noqa: E731
            in_flight = deque((b, submit(b)) for b in batches[:2])
            upcoming = iter(batches[2:])
            while in_flight:
                batch, futures = in_flight.popleft()
                following = next(upcoming, None)
                if following is not None:
                    in_flight.append((following, submit(following)))
                prepared = [f.result() for f in futures]
                input_ids, attention_mask = self.processor.pad([ids[i] for i in batch])
                pixel_values = torch.stack([pixels for pixels, _ in prepared])
                text_mask = torch.tensor([1.0 if texts[i] else 0.0 for i in batch])
                image_mask = torch.tensor([present for _, present in prepared])
                with torch.inference_mode():
                    feats = self.model.features(
                        side,
                        input_ids=input_ids.to(device),
                        attention_mask=attention_mask.to(device),
                        pixel_values=pixel_values.to(device=device, dtype=dtype),
                        text_mask=text_mask.to(device=device, dtype=dtype),
                        image_mask=image_mask.to(device=device, dtype=dtype),
                    )
                out[batch] = feats.float().cpu().numpy()
                self.last_present[batch] = [present for _, present in prepared]
                bar.advance(len(batch))
        return out
