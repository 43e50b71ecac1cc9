"""Run `ragvqa ARGS...` in this process with a full disk simulated at one file's write call.

Usage: python fault_driver.py NAME ragvqa-args...

Filling a real disk is not possible here (no mount rights), so the fault is simulated at the
write call, as close to the kernel as Python code gets: every file opened for writing through
`Path.open` whose name contains NAME (an atomic writer's temporary sibling counts:
`.metrics.json.1a2b.tmp`) stores the first half of what it is given and then raises ENOSPC
("No space left on device"), which is what write(2) does on a file system that fills up during
a write: a short write, then the error. Everything else runs as usual.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

from ragvqa.cli.main import app


class FullDisk:
    """A writable file whose next write is cut short by a full disk."""

    def __init__(self, fh: Any):
        self._fh = fh

    def write(self, data: Any) -> int:
        if not data:  # a probe (jsonlines writes "" to learn text from binary)
            return self._fh.write(data)
        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._fh.close()


def install(name: str) -> None:
    real_open = Path.open

    def open_(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(self, mode, *args, **kwargs)
        if name in self.name and any(c in mode for c in "wax+"):
            return FullDisk(fh)
        return fh

    Path.open = open_


if __name__ == "__main__":
    install(sys.argv[1])
    app(sys.argv[2:], prog_name="ragvqa")
