"""Rerankers: reorder first-stage results before the reader sees them.

Each reranker has `rerank_batch(queries, results, top_m, vectors)` (`ragvqa.parts.Reranker`)
and says in `needs` which of the pipeline's parts its constructor takes. `in_steps` runs one
over a whole retrieval, a step of queries at a time, with a progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ragvqa.progress import ProgressBar

if TYPE_CHECKING:
    from ragvqa.parts import Reranker
    from ragvqa.types import RetrievalResult, VQAQuery

STEP = 32  # queries reranked per call (the progress bar's unit of work)


def in_steps(
    reranker: Reranker,
    queries: Sequence[VQAQuery],
    results: Sequence[RetrievalResult],
    top_m: int | None,
    vectors: Any | None = None,
    *,
    progress: bool = False,
) -> list[RetrievalResult]:
    """The results reranked `STEP` queries a call; `vectors`: the queries' vectors from the
    encode stage, handed to the reranker (None: it encodes what it needs)."""
    ranked: list[RetrievalResult] = []
    with ProgressBar("reranking", len(queries), enabled=progress) as bar:
        for i in range(0, len(queries), STEP):
            step = slice(i, i + STEP)
            chunk = None if vectors is None else vectors[step]
            ranked += reranker.rerank_batch(queries[step], results[step], top_m, chunk)
            bar.advance(len(queries[step]))
    return ranked
