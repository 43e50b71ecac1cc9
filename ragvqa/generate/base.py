"""Old path of `ragvqa.readers.base`, kept so that existing imports still work."""

from ragvqa.readers.base import (
    EXIF_ORIENTATION,
    GenerationError,
    Sampling,
    check_layout,
    image_data_uri,
    openai_messages,
    plain_text,
)

__all__ = [
    "check_layout",
    "EXIF_ORIENTATION",
    "GenerationError",
    "image_data_uri",
    "openai_messages",
    "plain_text",
    "Sampling",
]
