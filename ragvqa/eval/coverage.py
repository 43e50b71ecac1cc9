"""How a prediction file lines up with the reference questions.

Both official scorers score only the predictions they are given: a question without a
prediction is not counted, a prediction with an unknown id is dropped, and a duplicated
prediction is scored twice. ragvqa keeps those rules (so numbers stay comparable) and reports
each of these cases with counts and the first few ids, so nothing is hidden.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ragvqa.types import Prediction

E = TypeVar("E")
SHOW = 5  # ids listed per case


def match_predictions(
    predictions: Sequence[Prediction], examples: Mapping[Any, E]
) -> tuple[list[tuple[Prediction, E]], dict[str, Any]]:
    """Pair each prediction with its reference, in prediction order, and describe the coverage.

    Returns:
        (pairs, coverage): pairs holds every prediction whose id is known (duplicates repeated);
        coverage has `predictions`, `scored`, `unknown_ids`, `duplicate_ids`,
        `missing_predictions` (counts) and `examples` (first few ids of each case).
    """
    pairs = [(p, examples[p.example_id]) for p in predictions if _known(p.example_id, examples)]
    unknown = [p.example_id for p in predictions if not _known(p.example_id, examples)]
    counts = Counter(p.example_id for p, _ in pairs)
    duplicates = [i for i, n in counts.items() if n > 1]
    missing = [i for i in examples if i not in counts]
    coverage = {
        "questions": len(examples),
        "predictions": len(predictions),
        "scored": len(pairs),
        "unknown_ids": len(unknown),
        "duplicate_ids": len(duplicates),
        "missing_predictions": len(missing),
        "examples": {
            "unknown_ids": [repr(i) if not isinstance(i, str) else i for i in unknown[:SHOW]],
            "duplicate_ids": duplicates[:SHOW],
            "missing_predictions": missing[:SHOW],
        },
    }
    return pairs, coverage


def _known(example_id: Any, examples: Mapping[Any, Any]) -> bool:
    try:
        return example_id in examples
    except TypeError:  # an unhashable id (a list, a dict) matches nothing
        return False
