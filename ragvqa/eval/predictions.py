"""Reading and writing prediction files: JSONL `{"data_id": ..., "prediction": "..."}`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl, write_jsonl
from ragvqa.types import Prediction


def load_predictions(path: str | Path, *, int_ids_as_str: bool = False) -> list[Prediction]:
    """Read predictions in file order; duplicates are kept (the official scorer counts them).

    Args:
        path: The JSONL file.
        int_ids_as_str: Accept integer `data_id`s and turn them into strings (E-VQA row
            numbers). InfoSeek keeps the official behaviour: a non-string id matches nothing.

    Raises:
        UserError: malformed line, missing `data_id` or `prediction`, non-string prediction,
            no prediction at all (an empty file).
    """
    return [
        Prediction(example_id=data_id, answer=answer, source=f"{path}:{line}")
        for line, data_id, answer in _checked(path, int_ids_as_str)
    ]


def read_predictions(
    path: str | Path, *, int_ids_as_str: bool = False
) -> tuple[list[Any], list[str]]:
    """`load_predictions` as two columns, (ids, answers), without an object per prediction
    (for scoring whole benchmarks). Same arguments, checks and errors."""
    ids: list[Any] = []
    answers: list[str] = []
    for _, data_id, answer in _checked(path, int_ids_as_str):
        ids.append(data_id)
        answers.append(answer)
    return ids, answers


def _checked(path: str | Path, int_ids_as_str: bool) -> Iterator[tuple[int, Any, str]]:
    """(line, data_id, prediction) of each line, checked; a file with none is an error (a
    score of 0.0 for an empty file would pass for a result)."""
    line = 0  # the line of the last record (1-based): 0 when there is none
    for line, obj in iter_jsonl(path):
        if "data_id" not in obj:
            raise UserError("missing field 'data_id'", path=str(path), line=line)
        data_id = obj["data_id"]
        if int_ids_as_str and data_id.__class__ is int:  # bool is not an id
            data_id = str(data_id)
        answer = obj.get("prediction")
        if answer.__class__ is not str:
            kind = "missing" if answer is None else f"a {type(answer).__name__}, not a string"
            raise UserError(f"field 'prediction' is {kind}", path=str(path), line=line)
        yield line, data_id, answer
    if line == 0:
        raise UserError("no predictions: the file is empty (or only blank lines)", path=str(path))


def write_score_columns(path: str | Path, ids: Iterable[str], scores: Iterable[int]) -> None:
    """Write E.jsonl: one `{"data_id", "score"}` line per scored prediction, in order (the
    columns of `InfoSeekScores`, or of a `MetricResult`'s per-example scores)."""
    write_jsonl(path, ({"data_id": i, "score": s} for i, s in zip(ids, scores, strict=True)))


def coverage_line(coverage: dict[str, Any]) -> str:
    """How predictions met questions, in one line for stderr: "scored 2 of 3 predictions; 1
    with unknown ids dropped; ..." (each count said only when it is not zero)."""
    line = f"scored {coverage['scored']} of {coverage['predictions']} predictions"
    notes = []
    if coverage["unknown_ids"]:
        notes.append(f"{coverage['unknown_ids']} with unknown ids dropped")
    if coverage["duplicate_ids"]:
        notes.append(f"{coverage['duplicate_ids']} ids predicted more than once (each counted)")
    if coverage["missing_predictions"]:
        notes.append(
            f"{coverage['missing_predictions']} of {coverage['questions']} questions have no "
            "prediction (not counted)"
        )
    return line + ("; " + "; ".join(notes) if notes else "")
