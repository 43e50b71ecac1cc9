"""Old path of `ragvqa.fetch.fetch`, kept so that existing imports still work."""

from ragvqa.fetch.fetch import (
    CHUNK,
    PRESENT,
    FetchResult,
    RetryPolicy,
    download,
    fetch,
    status,
)

__all__ = [
    "CHUNK",
    "download",
    "fetch",
    "FetchResult",
    "PRESENT",
    "RetryPolicy",
    "status",
]
