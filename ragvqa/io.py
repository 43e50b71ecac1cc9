"""File I/O at the edges: JSONL reading with line numbers, atomic writes.

Readers raise `UserError` naming the file and line of the first bad record, so a malformed
file never ends in a traceback. Writers go through a temporary file and an atomic rename, so an
interrupted run never leaves a half-written output in place of a good one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ragvqa.errors import UserError


def open_text(path: str | Path) -> IO[str]:
    """Open a UTF-8 text file for reading, turning OS errors into one-line `UserError`s."""
    p = Path(path)
    if p.is_dir():
        raise UserError("is a directory, expected a file", path=str(p))
    try:
        return p.open("r", encoding="utf-8", newline="")
    except FileNotFoundError:
        raise UserError("file not found", path=str(p)) from None
    except OSError as exc:
        raise UserError(f"cannot read file ({exc.strerror})", path=str(p)) from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of a JSONL file.

    Lines are decoded one by one, so bytes that are not UTF-8 are reported on their own line.

    Raises:
        UserError: a line that is not JSON, or not a JSON object, or bytes that are not UTF-8.
    """
    with open_text(path) as text:
        fh = text.buffer
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # BOM tolerated
            except UnicodeDecodeError:
                raise UserError("not UTF-8 text", path=str(path), line=lineno) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(
                    f"malformed JSON ({exc.msg})", path=str(path), line=lineno
                ) from None
            if not isinstance(obj, dict):
                raise UserError(
                    f"expected a JSON object, got {type(obj).__name__}",
                    path=str(path),
                    line=lineno,
                )
            yield lineno, obj


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[str]]:
    """Write a text file through a temporary sibling renamed into place on success.

    On any exception the temporary file is removed and an existing file at `path` is untouched.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UserError("output folder does not exist", path=str(parent))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror})", path=str(target)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Write one JSON document (indented, key order kept) atomically."""
    with atomic_writer(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write JSON lines atomically, one compact object per line."""
    import jsonlines

    with atomic_writer(path) as fh:
        writer = jsonlines.Writer(fh, compact=True, sort_keys=False)
        writer.write_all(rows)
