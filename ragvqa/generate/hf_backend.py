"""Old path of `ragvqa.readers.hf_backend`, kept so that existing imports still work."""

from ragvqa.readers.hf_backend import (
    TransformersGenerator,
    TransformersReader,
)

__all__ = [
    "TransformersGenerator",
    "TransformersReader",
]
