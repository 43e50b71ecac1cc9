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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragvqa.data.fields import get_str, get_str_list
from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl
from ragvqa.types import BenchmarkExample, NumericRange

QUESTION_TYPES = ("String", "Numerical", "Time")

Reference = tuple[str, ...] | NumericRange
# the official scorer's view of one question: (question_type, data_split, reference, source)
AnswerKey = dict[str, tuple[str, str, Reference, str]]
_Fields = tuple[Reference, str, str, tuple[str, ...], str]


def load_qtypes(path: str | Path) -> dict[str, str]:
    """Read a qtype file into {data_id: question_type}."""
    out: dict[str, str] = {}
    where = str(path)
    for line, obj in iter_jsonl(path):
        data_id, qtype = obj.get("data_id"), obj.get("question_type")
        if data_id.__class__ is not str:
            data_id = get_str(obj, "data_id", where, line)
        if qtype.__class__ is not str:
            qtype = get_str(obj, "question_type", where, line)
        out[data_id] = qtype
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
        # float(str(b)) is b for a float (repr round-trips), the common case, done inline
        low, high = (
            b if b.__class__ is float else float(str(b))
            for b in bounds[:2]
            if not isinstance(b, bool)
        )
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
    examples: list[BenchmarkExample] = []
    for data_id, qtype, fields, source in _questions(questions, types, qtypes):
        reference, image_id, question, answers, split = fields
        entity = entities.get(data_id)
        numeric = reference if isinstance(reference, NumericRange) else None
        examples.append(
            BenchmarkExample(
                example_id=data_id,
                dataset="infoseek",
                question=question,
                image_ids=(image_id,) if image_id else (),
                answers=answers,
                answer_eval=() if numeric is not None else reference,
                numeric_range=numeric,
                question_type=qtype,
                split=split,
                entity_ids=(entity[0],) if entity else (),
                entity_names=(entity[1],) if entity else (),
                image_dataset="oven",
                source=source,
            )
        )
    return examples


def load_answer_key(questions: str | Path, qtypes: str | Path) -> AnswerKey:
    """What the official scorer reads of the questions, checked exactly as `load_infoseek`
    checks them but without building a `BenchmarkExample` per question, so that scoring a
    whole split stays fast.

    Returns:
        {data_id: (question_type, data_split, reference, "file:line")} in file order; the
        reference is the `answer_eval` strings, or the range of a Numerical question.

    Raises:
        UserError: as `load_infoseek`.
    """
    types = load_qtypes(qtypes)
    return {
        data_id: (qtype, fields[4], fields[0], source)
        for data_id, qtype, fields, source in _questions(questions, types, qtypes)
    }


def _questions(
    questions: str | Path, types: dict[str, str] | None, qtypes: str | Path | None
) -> Iterator[tuple[str, str, _Fields, str]]:
    """(data_id, question_type, checked fields, "file:line") of each question, in file order;
    `types` read from the file `qtypes` (None: no types)."""
    path = str(questions)
    seen: set[str] = set()
    for line, obj in iter_jsonl(questions):
        data_id = obj.get("data_id")
        if data_id.__class__ is not str:
            data_id = get_str(obj, "data_id", path, line)
        if data_id in seen:
            raise UserError(f"duplicate data_id '{data_id}'", path=path, line=line)
        seen.add(data_id)
        qtype = ""
        if types is not None:
            if data_id not in types:
                raise UserError(f"question '{data_id}' has no question type", path=str(qtypes))
            qtype = types[data_id]
        yield data_id, qtype, _fields(obj, qtype, path, line), f"{path}:{line}"


def _fields(obj: dict[str, Any], qtype: str, path: str, line: int) -> _Fields:
    """(reference, image_id, question, answers, data_split) of one question line, each checked
    in this order (the first bad field is the one reported)."""
    raw_eval = obj.get("answer_eval")
    reference: Reference = ()
    if qtype.lower() == "numerical" or (not qtype and _is_numeric_eval(raw_eval)):
        reference = parse_numeric_range(raw_eval, path, line)
    elif raw_eval is not None:
        reference = _str_list(obj, "answer_eval", raw_eval, path, line)
    image_id, question, split = obj.get("image_id"), obj.get("question"), obj.get("data_split")
    if image_id.__class__ is not str:
        image_id = get_str(obj, "image_id", path, line, required=False)
    if question.__class__ is not str:
        question = get_str(obj, "question", path, line)
    answers = _str_list(obj, "answer", obj.get("answer"), path, line)
    if split.__class__ is not str:
        split = get_str(obj, "data_split", path, line, required=False)
    return reference, image_id, question, answers, split


def _str_list(obj: dict[str, Any], key: str, value: Any, path: str, line: int) -> tuple[str, ...]:
    """`get_str_list(obj, key, ...)`, with the common case (a list of strings) done inline."""
    if value.__class__ is list:
        for item in value:
            if item.__class__ is not str:
                break
        else:
            return tuple(value)
    return get_str_list(obj, key, path, line)
