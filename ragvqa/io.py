"""File I/O at the edges: JSONL reading with line numbers, atomic writes, file hashes.

Readers raise `UserError` naming the file and line of the first bad record, so a malformed
file never ends in a traceback. Writers go through a temporary file and an atomic rename, so an
interrupted run never leaves a half-written output in place of a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
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
def atomic_path(path: str | Path, *, fixed: bool = False) -> Iterator[Path]:
    """A temporary sibling path to write `path` through (any writer, text or binary: Arrow,
    safetensors, faiss, a memory-mapped array); renamed into place when the block ends.

    The temporary file is not created here: the writer creates it. On any exception it is
    removed and an existing file at `path` is untouched.

    Args:
        fixed: Use the same temporary name every time (`.<name>.tmp`) instead of a unique one,
            for large outputs of resumable builds with a single writer: what a killed run
            leaves is overwritten by the next attempt instead of piling up.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UserError("output folder does not exist", path=str(parent))
    suffix = "" if fixed else f".{secrets.token_hex(4)}"
    tmp = parent / f".{target.name}{suffix}.tmp"
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[str]]:
    """Write a text file through a temporary sibling renamed into place on success.

    On any exception the temporary file is removed and an existing file at `path` is untouched.
    """
    with atomic_path(path) as tmp:
        try:
            fh = tmp.open("x", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write ({exc.strerror})", path=str(path)) from None
        with fh:
            yield fh


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


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks (any size, bounded memory)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able value (stage cache keys, run fingerprints)."""
    text = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
