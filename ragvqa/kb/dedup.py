"""Page ids already seen by a KB build, in bounded memory, so a page given twice is kept once.

A KB of 6 million pages cannot keep its ids as a Python set (about half a GB) without breaking
the "never hold the KB in RAM" rule, so each id is reduced to a 64-bit hash: the bulk sits in a
sorted array of 64-bit integers (8 bytes per page: 48 MB for 6M pages) searched by bisection,
the latest ids in a small set that is merged into the array when it grows past `merge_every`.
About 6 us per page: about 5% of a build's time per page, both measured on the same loaded
2-core machine. Two distinct ids share a hash with probability about n^2 / 2^65 (one in a
million for 6M pages): the later page would be counted and named as a duplicate (`kb info`),
and the same in every build.
"""

from __future__ import annotations

import bisect
import hashlib
from array import array
from collections.abc import Iterable

import numpy as np


def id_hash(page_id: str) -> int:
    """A stable 64-bit hash of a page id (the same in every process, unlike `hash`)."""
    digest = hashlib.blake2b(page_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SeenIds:
    """Membership of page ids: `add` says whether an id is new."""

    def __init__(self, ids: Iterable[str] = (), *, merge_every: int = 1 << 17):
        self._sorted = array("Q")  # bisect reads it as Python ints, several times numpy's speed
        self._recent: set[int] = set()
        self.merge_every = merge_every
        for page_id in ids:
            self.add(page_id)

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, page_id: str) -> bool:
        return self._has(id_hash(page_id))

    def _has(self, h: int) -> bool:
        if h in self._recent:
            return True
        i = bisect.bisect_left(self._sorted, h)
        return i < len(self._sorted) and self._sorted[i] == h

    def add(self, page_id: str) -> bool:
        """Record `page_id`; True when it was not seen before."""
        h = id_hash(page_id)
        if self._has(h):
            return False
        self._recent.add(h)
        if len(self._recent) >= self.merge_every:
            recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            merged = np.sort(np.concatenate([np.frombuffer(self._sorted, np.uint64), recent]))
            self._sorted = array("Q", merged.tobytes())
            self._recent.clear()
        return True
