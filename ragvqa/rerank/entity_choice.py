"""MLLM entity choice: the reader picks which candidate entity the image shows.

The candidates are the distinct pages of the first-stage result (in first-stage order, at most
`max_candidates`); the reader answers with the `rerank/entity_choice` template. Its answer is
parsed robustly: a candidate number, a candidate's name, or "none". The chosen entity's
passages move to the front (in their first-stage order); "none" or an answer that cannot be
parsed keeps the first-stage order, so this reranker never makes a result worse by accident.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ragvqa.prompts import PromptLibrary
from ragvqa.readers.base import Sampling
from ragvqa.rerank.fusion import permute
from ragvqa.schema.base import defaults
from ragvqa.schema.components import EntityChoiceArgs
from ragvqa.types import RetrievalResult, VQAQuery


def candidates(result: RetrievalResult, limit: int) -> list[tuple[str, str]]:
    """(page id, entity name) of the distinct pages, first-stage order."""
    seen: dict[str, str] = {}
    for rp in result.passages:
        if rp.passage.page_id not in seen:
            seen[rp.passage.page_id] = rp.passage.title or rp.passage.page_id
        if len(seen) == limit:
            break
    return list(seen.items())


def parse_choice(answer: str, names: Sequence[str]) -> int | None:
    """0-based index of the chosen candidate, or None ("none", or not understood)."""
    text = answer.strip().lower()
    if not text or re.match(r"^(none|no match|neither|no candidate)\b", text):
        return None
    number = re.match(r"^\D{0,20}?(\d+)", text)
    if number and 1 <= int(number.group(1)) <= len(names):
        return int(number.group(1)) - 1
    matches = [i for i, name in enumerate(names) if name.lower() and name.lower() in text]
    if matches:  # the longest name mentioned ("St Mary's Church" beats "St Mary")
        return max(matches, key=lambda i: len(names[i]))
    return None


_ARGS = defaults(EntityChoiceArgs)


class EntityChoiceReranker:
    """Ask the reader which candidate entity the image shows; move it to the front.

    From a pipeline file: `template` is a template id (read from the pipeline's `prompts`) and
    `sampling` a mapping (a partial one starts from the `reader.sampling` defaults)."""

    args = EntityChoiceArgs  # its arguments' schema (ragvqa.registry)
    needs = ("reader", "prompts")  # the pipeline's parts its constructor takes

    def __init__(
        self,
        reader: Any,
        template: Any = _ARGS["template"],
        *,
        max_candidates: int = _ARGS["max_candidates"],
        sampling: Sampling | Mapping[str, Any] | None = None,
        prompts: Any = None,
    ):
        if isinstance(template, str):
            template = (prompts or PromptLibrary()).get(template)
        if isinstance(sampling, Mapping):
            sampling = Sampling(**sampling)
        self.reader, self.template = reader, template
        self.max_candidates = max_candidates
        self.sampling = sampling or Sampling(**_ARGS["sampling"].model_dump(exclude={"stop"}))

    @property
    def generator(self) -> Any:
        """The reader (its old name)."""
        return self.reader

    def choose(
        self, queries: Sequence[VQAQuery], results: Sequence[RetrievalResult]
    ) -> list[int | None]:
        """The chosen candidate per query (one batched generation call)."""
        lists = [candidates(r, self.max_candidates) for r in results]
        prompts = [
            self.template.render(
                question=q.question,
                image=q.image_path,
                candidates=[name for _, name in c] or ["(none)"],
            )
            for q, c in zip(queries, lists, strict=True)
        ]
        outputs = self.reader.generate(prompts, self.sampling)
        return [
            parse_choice(self.template.extract_answer(o.text), [n for _, n in c])
            for o, c in zip(outputs, lists, strict=True)
        ]

    def apply(
        self, result: RetrievalResult, choice: int | None, top_m: int | None = None
    ) -> RetrievalResult:
        """The chosen page's passages first, then the rest; first-stage order and scores kept."""
        order = list(range(len(result.passages)))
        if choice is not None:
            page = candidates(result, self.max_candidates)[choice][0]
            order.sort(key=lambda i: result.passages[i].passage.page_id != page)
        return permute(result, order, top_m)

    def rerank_batch(
        self,
        queries: Sequence[VQAQuery],
        results: Sequence[RetrievalResult],
        top_m: int | None = None,
        vectors: Any | None = None,
    ) -> list[RetrievalResult]:
        """The chosen entity's passages first, per query (one generation call; the reader
        reads the image and question: `vectors` unused)."""
        choices = self.choose(queries, results)
        return [self.apply(r, c, top_m) for r, c in zip(results, choices, strict=True)]
