"""Typed values exchanged between ragvqa's stages.

Every stage boundary (loader -> retriever -> reranker -> reader -> scorer) passes these frozen
dataclasses, never loose dicts: dicts exist only where data is read from or written to files.
This module imports nothing heavy (no torch, no numpy) so any part of the package can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class VQAQuery:
    """One question about one image, as a retriever or a reader sees it.

    `image_path` is None when the image is missing or the query is text-only.
    """

    query_id: str
    question: str
    image_path: str | None = None
    image_id: str | None = None


@dataclass(frozen=True)
class NumericRange:
    """The inclusive reference interval of an InfoSeek Numerical question."""

    low: float
    high: float


@dataclass(frozen=True)
class BenchmarkExample:
    """One benchmark question with everything a scorer or a retrieval metric needs.

    Attributes:
        example_id: InfoSeek `data_id`, or the E-VQA 0-based CSV row number as a string.
        dataset: "infoseek" or "evqa".
        question: The question text.
        image_ids: Dataset image ids; evaluations use the first.
        answers: Human-readable answers (InfoSeek `answer`; E-VQA '|'-separated alternatives).
        answer_eval: InfoSeek String/Time reference strings (empty for other datasets).
        numeric_range: InfoSeek Numerical reference interval, else None.
        question_type: InfoSeek "String" | "Numerical" | "Time"; E-VQA "templated" |
            "automatic" | "multi_answer" | "2_hop". Empty when unknown.
        split: InfoSeek `data_split`; E-VQA `encyclopedic_vqa_split`.
        entity_ids: Gold entities: InfoSeek Wikidata QID (withkb file); E-VQA Wikipedia URLs.
        entity_names: Gold entity names, parallel to `entity_ids` where known.
        image_dataset: Source collection of the image ("oven", "landmarks", "inaturalist").
        image_path: Resolved local image file, or None when missing or not resolved.
        source: "file:line" the example was read from, for error messages.
    """

    example_id: str
    dataset: str
    question: str
    image_ids: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    answer_eval: tuple[str, ...] = ()
    numeric_range: NumericRange | None = None
    question_type: str = ""
    split: str = ""
    entity_ids: tuple[str, ...] = ()
    entity_names: tuple[str, ...] = ()
    image_dataset: str = ""
    image_path: str | None = None
    source: str = ""

    @property
    def image_id(self) -> str | None:
        """The image evaluations use (the first id), or None."""
        return self.image_ids[0] if self.image_ids else None

    def to_query(self) -> VQAQuery:
        """The retrieval / reading query for this example."""
        return VQAQuery(
            query_id=self.example_id,
            question=self.question,
            image_path=self.image_path,
            image_id=self.image_id,
        )


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of a knowledge base (a Wikipedia section or text window)."""

    passage_id: str
    text: str
    title: str = ""
    section_title: str = ""
    page_id: str = ""
    entity_id: str = ""
    image_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrievedPassage:
    """A passage with its rank (0-based) and score in one retrieval result.

    The passage's fields read through (`rp.title`, `rp.section`, ...), and `to_json` is the
    one shape a retrieved passage has in every file ragvqa writes (`ragvqa answer --json`,
    a run's predictions.jsonl, the report).
    """

    passage: Passage
    score: float
    rank: int

    @property
    def passage_id(self) -> str:
        return self.passage.passage_id

    @property
    def title(self) -> str:
        return self.passage.title

    @property
    def section(self) -> str:
        return self.passage.section_title

    @property
    def text(self) -> str:
        return self.passage.text

    @property
    def entity_id(self) -> str:
        return self.passage.entity_id

    @property
    def page_id(self) -> str:
        return self.passage.page_id

    def to_json(self, text_limit: int | None = None) -> dict[str, Any]:
        """The JSON record; `text_limit` cuts the text to its first characters (snippets)."""
        p = self.passage
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "passage_id": p.passage_id,
            "page_id": p.page_id,
            "entity_id": p.entity_id,
            "title": p.title,
            "section": p.section_title,
            "text": p.text if text_limit is None else p.text[:text_limit],
        }


@dataclass(frozen=True)
class RetrievalResult:
    """The ranked passages retrieved for one query, best first."""

    query_id: str
    passages: tuple[RetrievedPassage, ...]


@dataclass(frozen=True)
class TextPart:
    """Text inside a chat message."""

    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image inside a chat message: a local file (or URL); never a model-specific token."""

    image: str


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat: a role ("system", "user", "assistant") and ordered parts."""

    role: str
    parts: tuple[TextPart | ImagePart, ...]

    @property
    def text(self) -> str:
        """The text parts joined (images left out)."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))


@dataclass(frozen=True)
class ChatPrompt:
    """A model-neutral rendered prompt, with the template it came from.

    `template` is "id@version" and `template_hash` the sha256 of the template file, so every
    answer can be traced to the exact prompt text that produced it.
    """

    messages: tuple[ChatMessage, ...]
    template: str = ""
    template_hash: str = ""
    truncated_passages: int = 0

    def images(self) -> list[str]:
        return [p.image for m in self.messages for p in m.parts if isinstance(p, ImagePart)]

    def to_json(self) -> list[dict[str, Any]]:
        """The messages as JSON: role, text (parts joined) and image files, in order."""
        return [
            {
                "role": m.role,
                "text": m.text,
                "images": [p.image for p in m.parts if isinstance(p, ImagePart)],
            }
            for m in self.messages
        ]


@dataclass(frozen=True)
class Generation:
    """A reader's output for one prompt, with everything needed to reproduce and inspect it."""

    text: str
    model: str
    sampling: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    backend: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Prediction:
    """A system's answer to one benchmark question.

    `raw_output` is the reader's unprocessed text where one exists; `answer` is what is scored.
    """

    example_id: str
    answer: str
    raw_output: str | None = None
    source: str = ""


@dataclass(frozen=True)
class ExampleScore:
    """The official 0/1 score of one prediction, with how it was decided.

    `method` is "exact" (string match), "range" (InfoSeek numerical), "bem" (E-VQA BEM
    classifier after a failed exact match) or "none" (exact match failed, no BEM model).
    """

    example_id: str
    score: int
    question_type: str
    split: str
    method: str


@dataclass(frozen=True)
class MetricResult:
    """A scorer's output.

    Attributes:
        metrics: The aggregate in the official structure and names (written as JSON as is).
        per_example: One score per scored prediction, in prediction order (duplicates included).
        coverage: How predictions and references matched up: counts of scored, unknown-id,
            duplicated and missing predictions, with the first few ids of each.
    """

    metrics: dict[str, Any]
    per_example: tuple[ExampleScore, ...]
    coverage: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """One question answered by a `Pipeline`, with everything that produced the answer.

    Attributes:
        query_id: The query's id (a benchmark's `data_id`).
        question: The question as asked.
        image: The query image file, or None.
        text: The answer (extracted from the reader's output by the template's rule).
        raw_output: The reader's unprocessed text; None when the question failed or was not
            read (retrieval only).
        passages: The retrieved passages after reranking, best first.
        evidence: The passages the reader read (the top ones that fitted its context).
        prompt: The exact prompt the reader was given (None when it was not read).
        template: The answer template "id@version", and `template_hash` its file's sha256.
        model: The reader's model.
        timings: Seconds per stage for this question (its share of a batched stage).
        error: Why the question could not be answered ("image not found: q.jpg"), else None.
    """

    query_id: str
    question: str
    image: str | None = None
    text: str = ""
    raw_output: str | None = None
    passages: tuple[RetrievedPassage, ...] = ()
    evidence: tuple[RetrievedPassage, ...] = ()
    prompt: ChatPrompt | None = None
    template: str = ""
    template_hash: str = ""
    model: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self, text_limit: int | None = None) -> dict[str, Any]:
        """The answer as `ragvqa answer --json` prints it (passages in their one shape)."""
        return {
            "query_id": self.query_id,
            "question": self.question,
            "image": self.image,
            "answer": self.text,
            "raw_output": self.raw_output,
            "error": self.error,
            "model": self.model,
            "template": self.template,
            "template_hash": self.template_hash,
            "retrieved": [rp.to_json(text_limit) for rp in self.passages],
            "evidence": [rp.passage_id for rp in self.evidence],
            "prompt": self.prompt.to_json() if self.prompt else [],
            "truncated_passages": self.prompt.truncated_passages if self.prompt else 0,
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
        }
