"""Loader for the official InfoSeek files.

Files (see docs/data.md): `infoseek_{split}.jsonl` (questions), `infoseek_{split}_qtype.jsonl`
(question types, required for scoring) and optionally `infoseek_{split}_withkb.jsonl` (gold
Wikidata entity per question, used by retrieval metrics). The withkb file is not in question
order and may cover only some questions.

Numerical reference ranges are read the way the official scorer reads them: the first item of
`answer_eval` (or a bare dict), its `range`, each end turned into text and back into a float,
first two ends kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragvqa.data.fields import get_str, get_str_list
from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl
from ragvqa.types import BenchmarkExample, NumericRange

QUESTION_TYPES = ("String", "Numerical", "Time")


def load_qtypes(path: str | Path) -> dict[str, str]:
    """Read a qtype file into {data_id: question_type}."""
    out: dict[str, str] = {}
    for line, obj in iter_jsonl(path):
        data_id = get_str(obj, "data_id", str(path), line)
        out[data_id] = get_str(obj, "question_type", str(path), line)
    return out


def load_withkb(path: str | Path) -> dict[str, tuple[str, str]]:
    """Read a withkb file into {data_id: (entity_id, entity_text)}."""
    out: dict[str, tuple[str, str]] = {}
    for line, obj in iter_jsonl(path):
        data_id = get_str(obj, "data_id", str(path), line)
        entity_id = get_str(obj, "entity_id", str(path), line)
        out[data_id] = (entity_id, get_str(obj, "entity_text", str(path), line, required=False))
    return out


def parse_numeric_range(answer_eval: Any, path: str, line: int) -> NumericRange:
    """The reference interval of a Numerical question, read as the official scorer reads it."""
    item = answer_eval[0] if isinstance(answer_eval, list) and answer_eval else answer_eval
    bounds = item.get("range") if isinstance(item, dict) else None
    if not isinstance(bounds, list) or len(bounds) < 2:
        raise UserError("numerical answer without a range [low, high]", path=path, line=line)
    try:
        low, high = (float(str(b)) for b in bounds[:2] if not isinstance(b, bool))
    except ValueError:
        raise UserError(
            f"numerical range is not two numbers: {bounds!r}", path=path, line=line
        ) from None
    return NumericRange(low, high)


def _is_numeric_eval(answer_eval: Any) -> bool:
    if isinstance(answer_eval, dict):
        return True
    return isinstance(answer_eval, list) and bool(answer_eval) and isinstance(answer_eval[0], dict)


def load_infoseek(
    questions: str | Path,
    qtypes: str | Path | None = None,
    withkb: str | Path | None = None,
) -> list[BenchmarkExample]:
    """Load InfoSeek questions, in file order.

    Args:
        questions: Official question JSONL (`data_id`, `image_id`, `question`, and for train/val
            `answer`, `answer_eval`, `data_split`).
        qtypes: Official qtype JSONL. When given, every question must have a type (the official
            scorer fails otherwise), and Numerical questions must have a range.
        withkb: Official withkb JSONL; fills `entity_ids` / `entity_names` where present.

    Raises:
        UserError: malformed line, missing field, missing question type, duplicate data_id,
            numerical answer without a range.
    """
    types = load_qtypes(qtypes) if qtypes is not None else None
    entities = load_withkb(withkb) if withkb is not None else {}
    path = str(questions)
    examples: list[BenchmarkExample] = []
    seen: set[str] = set()
    for line, obj in iter_jsonl(questions):
        data_id = get_str(obj, "data_id", path, line)
        if data_id in seen:
            raise UserError(f"duplicate data_id '{data_id}'", path=path, line=line)
        seen.add(data_id)
        qtype = ""
        if types is not None:
            if data_id not in types:
                raise UserError(f"question '{data_id}' has no question type", path=str(qtypes))
            qtype = types[data_id]
        examples.append(_example(obj, data_id, qtype, entities.get(data_id), path, line))
    return examples


def _example(
    obj: dict[str, Any],
    data_id: str,
    qtype: str,
    entity: tuple[str, str] | None,
    path: str,
    line: int,
) -> BenchmarkExample:
    raw_eval = obj.get("answer_eval")
    numeric = None
    answer_eval: tuple[str, ...] = ()
    if qtype.lower() == "numerical" or (not qtype and _is_numeric_eval(raw_eval)):
        numeric = parse_numeric_range(raw_eval, path, line)
    elif raw_eval is not None:
        answer_eval = get_str_list(obj, "answer_eval", path, line)
    image_id = get_str(obj, "image_id", path, line, required=False)
    return BenchmarkExample(
        example_id=data_id,
        dataset="infoseek",
        question=get_str(obj, "question", path, line),
        image_ids=(image_id,) if image_id else (),
        answers=get_str_list(obj, "answer", path, line),
        answer_eval=answer_eval,
        numeric_range=numeric,
        question_type=qtype,
        split=get_str(obj, "data_split", path, line, required=False),
        entity_ids=(entity[0],) if entity else (),
        entity_names=(entity[1],) if entity else (),
        image_dataset="oven",
        source=f"{path}:{line}",
    )
