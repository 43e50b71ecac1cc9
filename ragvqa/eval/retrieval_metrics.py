"""Retrieval metrics used in the field, computed from typed retrieval results.

- Entity recall@K: some passage among the top K belongs to a gold entity (E-VQA: the question's
  Wikipedia URL(s), matched against the passage's page id; InfoSeek: the Wikidata QID of the
  withkb file, matched against the passage's entity id; M2KR: the gold passage ids, matched
  against the passage id). For 2_hop E-VQA questions either URL counts.
- Pseudo-recall@K (PreFLMR / ReT convention): the lower-cased text of some passage among the
  top K contains a lower-cased answer string (`answers` and `answer_eval` of the question).

Both return percentages (100 * mean over the questions that can be judged) and how many
questions were judged; questions without gold entities (or answers) are left out and counted.

A run reports recall@K only up to its retrieval depth (`recall_ks`): with 5 passages retrieved,
recall@20 would only repeat recall@5 and suggest a deeper search than was made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ragvqa.types import BenchmarkExample, Passage, RetrievalResult

DEFAULT_KS = (1, 5, 10, 20, 50, 100)


def recall_ks(depth: int, ks: Sequence[int] = DEFAULT_KS) -> tuple[int, ...]:
    """The K of recall@K worth reporting for `depth` passages retrieved per question: those of
    `ks` up to `depth`, and `depth` itself (recall at the full depth). 5 -> (1, 5); 10 -> (1, 5,
    10); 3 -> (1, 3); 0 -> ()."""
    kept = [k for k in ks if k <= depth]
    if depth > 0 and depth not in kept:
        kept.append(depth)
    return tuple(sorted(kept))


def _recall(
    results: Sequence[RetrievalResult],
    examples: Sequence[BenchmarkExample],
    judge: Callable[[BenchmarkExample], Callable[[Passage], bool] | None],
    ks: Sequence[int],
) -> dict[str, float | int]:
    by_id = {e.example_id: e for e in examples}
    hits = {k: 0 for k in ks}
    judged = skipped = 0
    for result in results:
        example = by_id.get(result.query_id)
        relevant = judge(example) if example is not None else None
        if relevant is None:
            skipped += 1
            continue
        judged += 1
        first = next((i for i, rp in enumerate(result.passages) if relevant(rp.passage)), None)
        for k in ks:
            hits[k] += first is not None and first < k
    out: dict[str, float | int] = {
        f"recall@{k}": (100.0 * hits[k] / judged if judged else 0.0) for k in ks
    }
    out["judged"] = judged
    out["skipped"] = skipped
    return out


def _entity_judge(example: BenchmarkExample) -> Callable[[Passage], bool] | None:
    gold = {g for g in example.entity_ids if g}
    if not gold:
        return None
    return lambda p: p.entity_id in gold or p.page_id in gold or p.passage_id in gold


def _answer_judge(example: BenchmarkExample) -> Callable[[Passage], bool] | None:
    answers = {a.lower() for a in (*example.answers, *example.answer_eval) if a.strip()}
    if not answers:
        return None
    return lambda p: any(a in p.text.lower() for a in answers)


def entity_recall(
    results: Sequence[RetrievalResult],
    examples: Sequence[BenchmarkExample],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float | int]:
    """Entity (article) recall@K in percent, with the counts of judged and skipped questions."""
    return _recall(results, examples, _entity_judge, ks)


def pseudo_recall(
    results: Sequence[RetrievalResult],
    examples: Sequence[BenchmarkExample],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float | int]:
    """Pseudo-recall@K in percent: an answer string occurs in a top-K passage's text."""
    return _recall(results, examples, _answer_judge, ks)
