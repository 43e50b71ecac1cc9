"""Old path of `ragvqa.fetch.landing`, kept so that existing imports still work."""

from ragvqa.fetch.landing import (
    MARKER_DIR,
    check_destination,
    marker_path,
    matches,
    part_path,
    reject_if_bad,
)

__all__ = [
    "check_destination",
    "MARKER_DIR",
    "marker_path",
    "matches",
    "part_path",
    "reject_if_bad",
]
