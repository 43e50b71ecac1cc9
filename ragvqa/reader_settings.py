"""The reader's settings at run time: the validated `reader` section (`ragvqa.schema.sections`)
as a frozen value with its `Sampling`, what the pipeline prompts and decodes with."""

from __future__ import annotations

from dataclasses import dataclass

from ragvqa.generate.base import Sampling
from ragvqa.schema.sections import ReaderSection


@dataclass(frozen=True)
class ReaderSettings:
    """How the reader is prompted: template, evidence count, image on/off, decoding."""

    prompt: str = "answer/evidence_short@1"
    passages: int = 1
    images: bool = True
    sampling: Sampling = Sampling()
    context: int | None = None
    batch_size: int = 64


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
