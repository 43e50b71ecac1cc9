"""The parts a `Pipeline` is composed of, as Protocols: what the stages call on each.

A part is any object with these methods: the shipped ones (`RetEncoder`, `TextEncoder`,
`KBStore`, `PassageIndex`, the rerankers of `ragvqa.rerank`, the readers of `ragvqa.readers`)
or one handed to `Pipeline(..., components={...})` (a test's scripted reader, an engine shared
between pipelines). The Pipeline's attributes are typed with these, so a seam between two
stages says what crosses it; nothing here imports torch, numpy or faiss (vectors are arrays
`[batch, n_vec, dim]`, typed `Any`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ragvqa.readers.base import Sampling
from ragvqa.types import ChatPrompt, Generation, Passage, RetrievalResult, VQAQuery

Vectors = Any  # an array [batch, n_vec, dim] (numpy), never imported here


class QueryEncoder(Protocol):
    """Questions (and images) to vectors; documents too, for section reranking."""

    kind: str  # "ret" or "text"
    last_present: Any  # whether each query of the last batch had its image

    def encode_queries(self, queries: Sequence[VQAQuery]) -> Vectors: ...

    def encode_documents(self, passages: Sequence[Passage]) -> Vectors: ...


class KnowledgeBase(Protocol):
    """The passage store: passages by row and by page."""

    folder: Path

    def page_passages(self, page_id: str, limit: int = 1000) -> list[Passage]: ...


class Index(Protocol):
    """First-stage search over a knowledge base's passages."""

    manifest: dict[str, Any]
    params: Any  # the faiss settings as searched (a dataclass)

    def retrieve(
        self, query_ids: list[str], vectors: Vectors, k: int, *, one_per_page: bool = False
    ) -> list[RetrievalResult]: ...


class Reranker(Protocol):
    """Reorders first-stage results, a batch at a time. `vectors` are the batch's query
    vectors from the encode stage (None when the pipeline did not encode: a reranker that
    needs them encodes itself)."""

    def rerank_batch(
        self,
        queries: Sequence[VQAQuery],
        results: Sequence[RetrievalResult],
        top_m: int | None = None,
        vectors: Vectors | None = None,
    ) -> list[RetrievalResult]: ...


class Reader(Protocol):
    """A reader: all prompts of a batch in, one `Generation` per prompt out (same order)."""

    model: str

    def generate(self, prompts: list[ChatPrompt], sampling: Sampling) -> list[Generation]: ...


class Template(Protocol):
    """A prompt template (`ragvqa.prompts.PromptTemplate`)."""

    ref: str
    sha256: str
    inputs: Any

    def render(self, **values: Any) -> ChatPrompt: ...

    def extract_answer(self, raw: str) -> str: ...
