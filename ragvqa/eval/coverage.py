"""How a prediction file lines up with the reference questions.

Both official scorers score only the predictions they are given: a question without a
prediction is not counted, a prediction with an unknown id is dropped, and a duplicated
prediction is scored twice. ragvqa keeps those rules (so numbers stay comparable) and reports
each of these cases with counts and the first few ids, so nothing is hidden.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import compress
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
    known, coverage = match_ids([p.example_id for p in predictions], examples)
    pairs = [(predictions[i], examples[predictions[i].example_id]) for i in known]
    return pairs, coverage


def match_ids(ids: Sequence[Any], examples: Mapping[Any, Any]) -> tuple[list[int], dict[str, Any]]:
    """`match_predictions` for predictions held as columns: the positions of the ids that name
    a known example (in order, duplicates repeated) and the coverage."""
    try:
        hit = list(map(examples.__contains__, ids))
    except TypeError:  # an unhashable id somewhere: one at a time
        hit = [_known(i, examples) for i in ids]
    known = list(compress(range(len(ids)), hit))
    unknown = [ids[i] for i, h in enumerate(hit) if not h] if len(known) < len(ids) else []
    scored = [ids[i] for i in known] if unknown else ids
    distinct = set(scored)  # the common cases, no duplicate and no question left, in C
    duplicates = [] if len(distinct) == len(scored) else _repeated(scored)
    missing = [] if len(distinct) == len(examples) else [i for i in examples if i not in distinct]
    coverage = {
        "questions": len(examples),
        "predictions": len(ids),
        "scored": len(known),
        "unknown_ids": len(unknown),
        "duplicate_ids": len(duplicates),
        "missing_predictions": len(missing),
        "examples": {
            "unknown_ids": [repr(i) if not isinstance(i, str) else i for i in unknown[:SHOW]],
            "duplicate_ids": duplicates[:SHOW],
            "missing_predictions": missing[:SHOW],
        },
    }
    return known, coverage


def _repeated(ids: Sequence[Any]) -> list[Any]:
    """The ids that occur more than once, in order of first occurrence."""
    return [i for i, n in Counter(ids).items() if n > 1]


def _known(example_id: Any, examples: Mapping[Any, Any]) -> bool:
    try:
        return example_id in examples
    except TypeError:  # an unhashable id (a list, a dict) matches nothing
        return False
