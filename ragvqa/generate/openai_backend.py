"""Old path of `ragvqa.readers.openai_backend`, kept so that existing imports still work."""

from ragvqa.readers.openai_backend import (
    RETRY_STATUS,
    OpenAIGenerator,
    OpenAIReader,
    RequestFailed,
)

__all__ = [
    "OpenAIGenerator",
    "OpenAIReader",
    "RequestFailed",
    "RETRY_STATUS",
]
