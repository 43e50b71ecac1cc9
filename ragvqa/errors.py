"""User-facing errors.

A `UserError` is bad input the user can fix (a missing file, a malformed line, an unknown name).
The CLI prints its message as one line and exits with status 2; no traceback is shown.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input, reported as one line naming the problem and, where known, the file and line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.problem = message
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for a one-line error: its type's name (or
    `default`) when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else (default or type(exc).__name__)


def did_you_mean(
    name: object, known: Iterable[object], *, cutoff: float = 0.6, otherwise: str = ""
) -> str:
    """The hint every "unknown ..." error ends with: `; did you mean 'x'?` for the known name
    closest to `name` (difflib), else `otherwise`."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else otherwise
