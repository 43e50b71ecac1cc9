"""Score fusion and reordering, shared by every reranker.

s = alpha * first_stage + (1 - alpha) * rerank. Ties keep the first-stage order (a stable
sort), and ranks are renumbered from 0. The first-stage order is what a reranker falls back to
when it has nothing to say.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragvqa.types import RetrievalResult, RetrievedPassage


def fuse(first: float, rerank: float, alpha: float) -> float:
    return alpha * first + (1.0 - alpha) * rerank


def permute(
    result: RetrievalResult, order: Sequence[int], top_m: int | None = None
) -> RetrievalResult:
    """The passages in `order`, keeping their scores, cut to `top_m`, ranks renumbered."""
    order = list(order)[:top_m] if top_m is not None else list(order)
    passages = tuple(
        RetrievedPassage(result.passages[i].passage, result.passages[i].score, rank)
        for rank, i in enumerate(order)
    )
    return RetrievalResult(result.query_id, passages)


def reorder(
    result: RetrievalResult, scores: Sequence[float], top_m: int | None = None
) -> RetrievalResult:
    """The passages sorted by `scores` (best first, stable), which become their scores."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ranked = permute(result, order, top_m)
    return RetrievalResult(
        result.query_id,
        tuple(
            RetrievedPassage(rp.passage, float(scores[i]), rp.rank)
            for rp, i in zip(ranked.passages, order, strict=False)
        ),
    )


def fused_order(
    result: RetrievalResult,
    rerank_scores: Sequence[float],
    alpha: float,
    top_m: int | None = None,
) -> RetrievalResult:
    """Fuse each passage's first-stage score with its rerank score, then reorder."""
    scores = [fuse(p.score, r, alpha) for p, r in zip(result.passages, rerank_scores, strict=True)]
    return reorder(result, scores, top_m)
