"""Old path of `ragvqa.fetch.fetch_hub`, kept so that existing imports still work."""

from ragvqa.fetch.fetch_hub import (
    fetch_hub,
)

__all__ = [
    "fetch_hub",
]
