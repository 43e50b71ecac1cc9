"""wn-wiki: WordNet 3.0 instance glosses answered from 10,033 Wikipedia lead paragraphs.

A text-only benchmark built from real data that ships in package indexes (see
benchmarks/wn-wiki/PROVENANCE.md): the question is a WordNet gloss ("French physicist who
discovered that rays emitted by uranium salts affect photographic plates (1852-1908)"), the
gold entity is the Wikipedia article it defines ("Henri Becquerel") and the answers are the
article's title and the synset's other names. One file, JSONL, one object a line:
{"data_id", "question", "answers", "entity"}. Scored by normalised exact match against any
answer (`accuracy`); retrieval is judged by entity recall against the lead titles (a
`wiki-leads` KB has the title as entity id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ragvqa.benchmarks.base import Benchmark, FileRole, percent
from ragvqa.data.fields import get_str
from ragvqa.errors import UserError
from ragvqa.eval.wn_wiki_scorer import aggregate_wn_wiki, score_wn_wiki
from ragvqa.io import iter_jsonl
from ragvqa.types import BenchmarkExample, ExampleScore, MetricResult, Prediction

NAME = "wn-wiki"


class WnWiki(Benchmark):
    name = NAME
    title = "WordNet glosses -> Wikipedia leads"
    roles: ClassVar[Mapping[str, FileRole]] = {"questions": FileRole(help="wn-wiki JSONL")}
    image_root = ""  # text only
    headline = ("accuracy",)
    scores_answers = True

    def load(self, files: Mapping[str, str]) -> list[BenchmarkExample]:
        path = files["questions"]
        examples: list[BenchmarkExample] = []
        seen: dict[str, int] = {}
        for line, row in iter_jsonl(path):
            data_id = get_str(row, "data_id", path, line)
            if data_id in seen:
                raise UserError(
                    f"duplicate data_id {data_id!r} (first on line {seen[data_id]})",
                    path=path,
                    line=line,
                )
            seen[data_id] = line
            examples.append(_example(row, data_id, path, line))
        return examples

    def resolve_images(
        self, examples: Sequence[BenchmarkExample], roots: Mapping[str, str]
    ) -> tuple[list[BenchmarkExample], list[str]]:
        """Text only: no image to resolve, none missing."""
        return list(examples), []

    def score(
        self,
        predictions: Sequence[Prediction],
        examples: Sequence[BenchmarkExample],
        files: Mapping[str, str],
    ) -> MetricResult:
        return score_wn_wiki(predictions, examples)

    # one group: every question
    groups = ("all",)

    def group_of(self, question_type: str, split: str) -> str:
        return "all"

    def from_group_counts(self, counts: Mapping[str, tuple[int, int]]) -> dict[str, float | None]:
        n, hits = counts["all"]
        return {"accuracy": percent(hits, n)}

    def aggregate(self, scores: Sequence[ExampleScore]) -> dict[str, float | None]:
        return {"accuracy": aggregate_wn_wiki(scores)["accuracy"]}


def _example(row: dict[str, Any], data_id: str, path: str, line: int) -> BenchmarkExample:
    question = get_str(row, "question", path, line)
    entity = get_str(row, "entity", path, line)
    answers = row.get("answers")
    if answers is None:
        raise UserError("missing field 'answers'", path=path, line=line)
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise UserError("field 'answers' must be a list of strings", path=path, line=line)
    if not answers or not question.strip() or not entity.strip():
        raise UserError("empty question, entity or answers", path=path, line=line)
    return BenchmarkExample(
        example_id=data_id,
        dataset=NAME,
        question=question,
        image_ids=(),
        answers=tuple(answers),
        entity_ids=(entity,),
        entity_names=(entity,),
        source=f"{path}:{line}",
    )
