"""Section rescoring with the ReT encoder: image + question against every section of the
top-K entities of the first stage, fused with the first-stage score.

For each of the first `top_entities` distinct pages, all of the page's sections are fetched
from the KB and encoded as documents (the index's document template), the query is encoded
once, and each section gets the late-interaction score s_r (the same scale as a ReT index's
first-stage scores). A section's first-stage score is its own when it was retrieved, else its
page's best. Final score: alpha * first + (1 - alpha) * s_r.

The pipeline hands the batch's query vectors from its encode stage (cached with the run's
other stages) to `rerank_batch`, so a query is not encoded a second time; called without them
(`rerank` on its own), the reranker encodes the query itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ragvqa.errors import UserError
from ragvqa.index.documents import DEFAULT_TEMPLATE, document_text
from ragvqa.rerank.fusion import reorder
from ragvqa.schema.components import RetSectionsArgs
from ragvqa.types import RetrievalResult, RetrievedPassage, VQAQuery


class RetSectionReranker:
    """Rescore the sections of the top entities with a ReT encoder (`RetEncoder`)."""

    def __init__(
        self,
        encoder: Any,
        kb: Any,
        *,
        alpha: float = 0.5,
        top_entities: int = 5,
        doc_template: str = DEFAULT_TEMPLATE,
    ):
        if getattr(encoder, "kind", "ret") != "ret":
            raise UserError(
                "rerank type ret_sections needs a ReT encoder (late interaction over image and "
                f"text); this pipeline's encoder is a {encoder.kind} encoder"
            )
        self.encoder, self.kb = encoder, kb
        self.alpha, self.top_entities, self.doc_template = alpha, top_entities, doc_template

    args = RetSectionsArgs  # its arguments' schema (ragvqa.registry)
    needs = ("encoder", "kb")  # the pipeline's parts its constructor takes

    def rerank_batch(
        self,
        queries: Sequence[VQAQuery],
        results: Sequence[RetrievalResult],
        top_m: int | None = None,
        vectors: Any | None = None,
    ) -> list[RetrievalResult]:
        """Each query's result reranked, with its vectors from the encode stage when given."""
        return [
            self.rerank(q, r, top_m, vector=None if vectors is None else vectors[i : i + 1])
            for i, (q, r) in enumerate(zip(queries, results, strict=True))
        ]

    def rerank(
        self,
        query: VQAQuery,
        result: RetrievalResult,
        top_m: int | None = None,
        *,
        vector: Any | None = None,
    ) -> RetrievalResult:
        """One result reranked; `vector`: the query's vectors [1, n, dim] (None: encoded here)."""
        import torch

        from ragvqa.models.loss import late_interaction  # imports torch

        first: dict[str, float] = {}
        page_best: dict[str, float] = {}
        for rp in result.passages:
            first.setdefault(rp.passage.passage_id, rp.score)
            page_best.setdefault(rp.passage.page_id, rp.score)
        pages = list(page_best)[: self.top_entities]
        sections = [
            p
            for page in pages
            for p in (
                self.kb.page_passages(page)
                or [rp.passage for rp in result.passages if rp.passage.page_id == page]
            )
        ]
        if not sections:
            return result
        q = self.encoder.encode_queries([query]) if vector is None else vector
        d = self.encoder.encode_documents(
            [replace(p, text=document_text(p, self.doc_template)) for p in sections]
        )
        rerank = late_interaction(torch.from_numpy(q), torch.from_numpy(d))[0].tolist()
        candidates = RetrievalResult(
            result.query_id,
            tuple(
                RetrievedPassage(p, first.get(p.passage_id, page_best[p.page_id]), i)
                for i, p in enumerate(sections)
            ),
        )
        fused = [
            self.alpha * c.score + (1 - self.alpha) * r
            for c, r in zip(candidates.passages, rerank, strict=True)
        ]
        return reorder(candidates, fused, top_m)
