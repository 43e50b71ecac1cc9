"""The fp16 document vectors an index folder keeps on disk, read memory-mapped at search.

Search reads a few hundred scattered rows per query (exact rescoring, MaxSim). When those rows
are in the OS page cache this costs microseconds; when they are not (the first queries after a
start, or a file larger than RAM), every row is a disk read. Two things keep that cheap:
readahead is turned off for the mapping (a fault then reads its own page, not 128 KB around
it), and while reads are slow the pages of all the rows a batch needs are requested at once
(`MADV_WILLNEED`) before any is touched, so the disk serves them in parallel instead of one
fault at a time. Once reads are fast again (the rows are cached) the requests stop, since each
costs a system call (about 1 µs per row).
"""

from __future__ import annotations

import mmap
import time
from pathlib import Path

import numpy as np

# a gather slower than this per row is served from disk, not from the page cache
COLD_SECONDS_PER_ROW = 2e-6


class StoredVectors:
    """Rows of an `.npy` array [N, ...] (fp16), gathered by row number."""

    def __init__(self, path: str | Path):
        self.array = np.load(path, mmap_mode="r")
        self.shape = self.array.shape
        self._map = getattr(self.array, "_mmap", None)
        # the mapping starts at the header offset rounded down to the allocation granularity
        self._start = self.array.offset % mmap.ALLOCATIONGRANULARITY
        self._row_bytes = int(np.prod(self.shape[1:])) * self.array.itemsize
        self.cold = True  # until a gather shows the rows come from memory
        if self._map is not None and hasattr(mmap, "MADV_RANDOM"):
            self._map.madvise(mmap.MADV_RANDOM)

    def __len__(self) -> int:
        return self.shape[0]

    def page_ranges(self, rows: np.ndarray) -> list[tuple[int, int]]:
        """(start, length) of the whole pages, within the mapping, that hold `rows`."""
        page = mmap.PAGESIZE
        first = self._start + np.unique(np.asarray(rows, dtype=np.int64)) * self._row_bytes
        starts = first // page * page
        ends = (first + self._row_bytes - 1) // page * page + page
        return list(zip(starts.tolist(), (ends - starts).tolist(), strict=True))

    def prefetch(self, rows: np.ndarray) -> None:
        """While reads are cold, ask the OS to read the pages of `rows` now, all at once."""
        if not self.cold or self._map is None or not hasattr(mmap, "MADV_WILLNEED"):
            return
        for start, length in self.page_ranges(rows):
            self._map.madvise(mmap.MADV_WILLNEED, start, length)  # clamped at the end

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """Rows in the order given, as a new array [len(rows), ...] (callers that read many
        rows at once `prefetch` them first); the time it takes updates `cold`."""
        rows = np.asarray(rows, dtype=np.int64)
        started = time.perf_counter()
        out = np.asarray(self.array[rows])
        if len(rows):
            self.cold = time.perf_counter() - started > COLD_SECONDS_PER_ROW * len(rows)
        return out
