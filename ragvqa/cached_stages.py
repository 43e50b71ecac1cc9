"""The retrieval stages of a `Pipeline` through its stage cache, each timed.

Each stage's output is looked up under the key of everything it depends on (encode: encoder
identity and dtype, question texts and image files; search: the encode key, query ids, index
and search settings; rerank: the search key and the reranker), computed on a miss and saved.
Without a cache every stage is computed. A stage's `timings` entry holds its seconds (0 when
cached) and whether it was cached. `Pipeline.retrieve_batch` runs them in order; the stage
functions themselves are the pipeline's `encode`, `search` and `rerank`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragvqa.io import digest
from ragvqa.progress import ProgressBar
from ragvqa.types import RetrievalResult, VQAQuery

if TYPE_CHECKING:
    from ragvqa.pipeline import Pipeline
    from ragvqa.run.cache import StageCache

RERANK_STEP = 32  # queries reranked per call (the progress bar's unit of work)
Timings = dict[str, dict[str, Any]]


def encode(
    pipe: Pipeline, queries: Sequence[VQAQuery], cache: StageCache | None, timings: Timings
) -> tuple[Any, Any, str]:
    """(query vectors, image present flags, the encode key)."""
    started = time.perf_counter()
    key = digest(
        {
            "encoder": pipe.encoder_key(),
            "dtype": pipe.encoder_dtype(),
            "queries": [[q.question, _image_stamp(q.image_path)] for q in queries],
        }
    )
    hit = cache.load_vectors(key) if cache is not None else None
    if hit is None:
        vectors, present = pipe.encode(queries)
        if cache is not None:
            cache.save_vectors(key, vectors, present)
    else:
        vectors, present = hit
    _timed(timings, "encode", hit is not None, started)
    return vectors, present, key


def search(
    pipe: Pipeline,
    queries: Sequence[VQAQuery],
    vectors: Any,
    encode_key: str,
    cache: StageCache | None,
    timings: Timings,
) -> tuple[list[RetrievalResult], str]:
    """(first-stage results, the search key)."""
    started = time.perf_counter()
    ids = [q.query_id for q in queries]
    key = digest([encode_key, ids, pipe.index_key(), pipe.top_k, pipe.one_per_page])
    results = cache.load_results("search", key, pipe.kb) if cache is not None else None
    hit = results is not None
    if results is None:
        results = pipe.search(ids, vectors) if queries else []
        if cache is not None:
            cache.save_results("search", key, results)
    _timed(timings, "search", hit, started)
    return results, key


def rerank(
    pipe: Pipeline,
    queries: Sequence[VQAQuery],
    results: list[RetrievalResult],
    search_key: str,
    cache: StageCache | None,
    timings: Timings,
    progress: bool,
) -> list[RetrievalResult]:
    """The reranked results (the search results as they are without a `rerank` section)."""
    if not pipe.config.get("rerank"):
        return results
    started = time.perf_counter()
    key = digest([search_key, pipe.rerank_key()])
    ranked = cache.load_results("rerank", key, pipe.kb) if cache is not None else None
    hit = ranked is not None
    if ranked is None:
        ranked = []
        with ProgressBar("reranking", len(queries), enabled=progress) as bar:
            for i in range(0, len(queries), RERANK_STEP):
                chunk = queries[i : i + RERANK_STEP]
                ranked += pipe.rerank(chunk, results[i : i + RERANK_STEP])
                bar.advance(len(chunk))
        if cache is not None:
            cache.save_results("rerank", key, ranked)
    _timed(timings, "rerank", hit, started)
    return ranked


def _image_stamp(path: str | None) -> Any:
    """What identifies an image file's content for a cache key: path, size, mtime."""
    file = Path(path) if path else None
    if file is None or not file.is_file():
        return None
    stat = file.stat()
    return [path, stat.st_size, stat.st_mtime_ns]


def _timed(timings: Timings, stage: str, cached: bool, started: float) -> None:
    seconds = 0.0 if cached else time.perf_counter() - started
    timings[stage] = {"seconds": round(seconds, 3), "cached": cached}
