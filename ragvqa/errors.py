"""User-facing errors.

A `UserError` is bad input the user can fix (a missing file, a malformed line, an unknown name).
The CLI prints its message as one line and exits with status 2; no traceback is shown.
"""

from __future__ import annotations


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
