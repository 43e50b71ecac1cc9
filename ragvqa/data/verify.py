"""Old path of `ragvqa.fetch.verify`, kept so that existing imports still work."""

from ragvqa.fetch.verify import (
    SHOW_MISSING,
    check_artefact,
    count_records,
    missing_images,
)

__all__ = [
    "check_artefact",
    "count_records",
    "missing_images",
    "SHOW_MISSING",
]
