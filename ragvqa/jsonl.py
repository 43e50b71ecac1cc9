"""The JSON Lines reader: (line number, object) for each non-blank line, fast and exact.

orjson decodes the lines where it is installed (about five times faster than the standard
library on benchmark files, which is most of what scoring a benchmark costs). The standard
library decodes every line orjson refuses (blank lines, a byte-order mark, NaN, numbers beyond
a double, lone surrogates, bytes that are not UTF-8, malformed JSON) and every line of a block
holding a run of 19 or more digits (orjson reads integers beyond 64 bits as floats where `json`
keeps them exact). So the objects, and the one-line errors in the standard library's words, are
those of `json.loads` on each line, whichever decoder ran. `ragvqa.io.iter_jsonl` opens a
file and reads it with `read_objects`.

The file is read in blocks and split at line feeds in C, so memory stays bounded whatever the
file's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ragvqa.errors import UserError

try:
    import orjson
except ImportError:  # the standard library alone gives the same results, slower
    orjson = None  # type: ignore[assignment]

_BLOCK = 1 << 22  # bytes read at a time
_DIGITS_ONLY = bytes(57 if 48 <= c <= 57 else 46 for c in range(256))  # digit -> 9, else "."
_LONG_NUMBER = b"9" * 19  # the shortest integer orjson may read as a float (-9999999999999999999)
_BLANK = object()


def read_objects(fh: IO[bytes], path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of the open JSONL file
    `fh`, read from its start (`ragvqa.io.iter_jsonl` opens it). A byte-order mark before the
    first line is tolerated; lines end at line feeds only.

    Raises:
        UserError: a line that is not JSON, or not a JSON object, or bytes that are not UTF-8,
            naming `path` and the line.
    """
    lineno = 0
    for lines, ended, exact_ints in _line_blocks(fh):
        fast = orjson is not None and not exact_ints
        for raw in lines:
            lineno += 1
            try:
                if not fast:
                    raise ValueError
                obj = orjson.loads(raw)
            except ValueError:  # orjson.JSONDecodeError is one
                obj = _decode(raw + b"\n" if ended else raw, lineno, path)
                if obj is _BLANK:
                    continue
            if obj.__class__ is not dict:
                raise UserError(
                    f"expected a JSON object, got {type(obj).__name__}",
                    path=str(path),
                    line=lineno,
                )
            yield lineno, obj


def _line_blocks(fh: IO[bytes]) -> Iterator[tuple[list[bytes], bool, bool]]:
    """(lines without their line feeds, whether they had one, whether the block holds a long
    digit run) for consecutive blocks of whole lines; only the file's last line may lack one."""
    parts: list[bytes] = []
    while block := fh.read(_BLOCK):
        cut = block.rfind(b"\n")
        if cut < 0:  # a line longer than a block
            parts.append(block)
            continue
        parts.append(block[:cut])
        whole = b"".join(parts)
        parts = [block[cut + 1 :]]
        yield whole.split(b"\n"), True, _has_long_number(whole)
    tail = b"".join(parts)
    if tail:
        yield [tail], False, _has_long_number(tail)


def _has_long_number(data: bytes) -> bool:
    return _LONG_NUMBER in data.translate(_DIGITS_ONLY)


def _decode(raw: bytes, lineno: int, path: str | Path) -> Any:
    """One line decoded by the standard library, exactly as the reader always has."""
    try:
        line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # BOM tolerated
    except UnicodeDecodeError:
        raise UserError("not UTF-8 text", path=str(path), line=lineno) from None
    if not line.strip():
        return _BLANK
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"malformed JSON ({exc.msg})", path=str(path), line=lineno) from None
