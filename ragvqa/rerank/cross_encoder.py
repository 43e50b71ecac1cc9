"""Text cross-encoder reranking (e.g. the BGE reranker family): question + section -> score.

An `AutoModelForSequenceClassification` with one output (a relevance logit; with two outputs
the logit of class 1 minus class 0) reads "question [SEP] display title: section text" for each
candidate passage, in batches; its scores are fused with the first-stage scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragvqa.errors import UserError, first_line
from ragvqa.rerank.fusion import fused_order
from ragvqa.schema.components import CrossEncoderArgs
from ragvqa.types import RetrievalResult, VQAQuery


class CrossEncoderReranker:
    """Rescore passages with a cross-encoder; s = alpha * first + (1 - alpha) * cross."""

    args = CrossEncoderArgs  # its arguments' schema (ragvqa.registry)
    needs = ()  # none of the pipeline's parts

    def __init__(
        self,
        model: str,
        *,
        alpha: float = 0.0,
        batch_size: int = 32,
        max_length: int = 512,
        device: str | None = None,
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.alpha, self.batch_size, self.max_length = alpha, batch_size, max_length
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = (
                AutoModelForSequenceClassification.from_pretrained(model, use_safetensors=True)
                .to(self.device)
                .eval()
            )
        except OSError as exc:
            first = first_line(exc)
            raise UserError(f"cannot load cross-encoder {model!r} ({first})") from None

    def scores(self, question: str, texts: list[str]) -> list[float]:
        import torch

        out: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            inputs = self.tokenizer(
                [question] * len(chunk),
                chunk,
                padding=True,
                truncation="only_second",
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**inputs).logits.float()
            values = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
            out.extend(values.tolist())
        return out

    def rerank(
        self, query: VQAQuery, result: RetrievalResult, top_m: int | None = None
    ) -> RetrievalResult:
        texts = []
        for rp in result.passages:
            p = rp.passage
            title = f"{p.title} / {p.section_title}" if p.section_title else p.title
            texts.append(f"{title}: {p.text}" if title else p.text)
        if not texts:
            return result
        return fused_order(result, self.scores(query.question, texts), self.alpha, top_m)

    def rerank_batch(
        self,
        queries: Sequence[VQAQuery],
        results: Sequence[RetrievalResult],
        top_m: int | None = None,
        vectors: Any | None = None,
    ) -> list[RetrievalResult]:
        """Each result reranked on its own (a cross-encoder reads text: `vectors` unused)."""
        return [self.rerank(q, r, top_m) for q, r in zip(queries, results, strict=True)]
