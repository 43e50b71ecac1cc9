"""Embedding shards: a KB's document vectors on disk, in fixed row ranges, fp16.

Shard i holds KB rows [i * rows_per_shard, (i + 1) * rows_per_shard) as
`emb/shard-00000.safetensors` with one tensor `vectors` [rows, n_vectors, dim]. A shard is
written under a temporary name and renamed when complete, so after a kill the finished shards
are kept and only the missing ones are encoded again. Whatever engine encodes (in-process or a
Ray job), the shards are the same files. They live as long as a build: the finished build
merges them into the index folder's `vectors.f16.npy` and removes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ragvqa.errors import UserError
from ragvqa.io import atomic_path


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def shard_ranges(rows: int, rows_per_shard: int) -> list[tuple[int, int]]:
    return [(s, min(s + rows_per_shard, rows)) for s in range(0, rows, rows_per_shard)]


def write_shard(folder: Path, index: int, vectors: np.ndarray) -> None:
    """Save one shard atomically (fp16)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / shard_name(index), fixed=True) as tmp:
        save_file({"vectors": np.ascontiguousarray(vectors, dtype=np.float16)}, str(tmp))


def missing_shards(folder: Path, ranges: list[tuple[int, int]]) -> list[int]:
    return [i for i in range(len(ranges)) if not (folder / shard_name(i)).is_file()]


def read_shard(folder: Path, index: int, expected_rows: int | None = None) -> np.ndarray:
    """Vectors of one shard as fp16 [rows, n_vectors, dim]; a truncated file is refused."""
    from safetensors.numpy import load_file

    path = folder / shard_name(index)
    try:
        vectors = load_file(str(path))["vectors"]
    except FileNotFoundError:
        raise UserError("embedding shard is missing", path=str(path)) from None
    except Exception as exc:  # truncated or corrupt
        raise UserError(f"embedding shard is unreadable ({exc})", path=str(path)) from None
    if expected_rows is not None and vectors.shape[0] != expected_rows:
        raise UserError(
            f"embedding shard has {vectors.shape[0]} rows, expected {expected_rows}",
            path=str(path),
        )
    return vectors


def iter_shards(folder: Path, ranges: list[tuple[int, int]]) -> Iterator[tuple[int, Any]]:
    """(first row, fp16 vectors) per shard, in order."""
    for i, (start, end) in enumerate(ranges):
        yield start, read_shard(folder, i, end - start)
