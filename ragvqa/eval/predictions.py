"""Reading and writing prediction files: JSONL `{"data_id": ..., "prediction": "..."}`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl, write_jsonl
from ragvqa.types import ExampleScore, Prediction


def load_predictions(path: str | Path, *, int_ids_as_str: bool = False) -> list[Prediction]:
    """Read predictions in file order; duplicates are kept (the official scorer counts them).

    Args:
        path: The JSONL file.
        int_ids_as_str: Accept integer `data_id`s and turn them into strings (E-VQA row
            numbers). InfoSeek keeps the official behaviour: a non-string id matches nothing.

    Raises:
        UserError: malformed line, missing `data_id` or `prediction`, non-string prediction.
    """
    out: list[Prediction] = []
    for line, obj in iter_jsonl(path):
        if "data_id" not in obj:
            raise UserError("missing field 'data_id'", path=str(path), line=line)
        data_id = obj["data_id"]
        if int_ids_as_str and isinstance(data_id, int) and not isinstance(data_id, bool):
            data_id = str(data_id)
        answer = obj.get("prediction")
        if not isinstance(answer, str):
            kind = "missing" if answer is None else f"a {type(answer).__name__}, not a string"
            raise UserError(f"field 'prediction' is {kind}", path=str(path), line=line)
        out.append(Prediction(example_id=data_id, answer=answer, source=f"{path}:{line}"))
    return out


def write_per_example(path: str | Path, scores: Iterable[ExampleScore]) -> None:
    """Write E.jsonl: one `{"data_id", "score"}` line per scored prediction, in order."""
    write_jsonl(path, ({"data_id": s.example_id, "score": s.score} for s in scores))
