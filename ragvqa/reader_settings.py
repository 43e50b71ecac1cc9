"""The reader's settings at run time: the validated `reader` section (`ragvqa.schema.sections`)
as a frozen value with its `Sampling`, what the pipeline prompts and decodes with."""

from __future__ import annotations

from dataclasses import dataclass

from ragvqa.readers.base import Sampling
from ragvqa.schema.sections import ReaderSection


@dataclass(frozen=True)
class ReaderSettings:
    """How the reader is prompted: template, evidence count, image on/off, decoding. Made
    from a validated `reader` section only (`reader_settings`), so it has no defaults of its
    own: the section's are the only ones."""

    prompt: str
    passages: int
    images: bool
    sampling: Sampling
    context: int | None
    batch_size: int


def reader_settings(reader: ReaderSection) -> ReaderSettings:
    """The runtime settings of a validated `reader` section."""
    sampling = reader.sampling
    return ReaderSettings(
        prompt=reader.prompt,
        passages=reader.passages,
        images=reader.images,
        sampling=Sampling(**{**sampling.model_dump(), "stop": tuple(sampling.stop)}),
        context=reader.context,
        batch_size=reader.batch_size,
    )
