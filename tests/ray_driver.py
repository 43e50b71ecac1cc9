"""Run `ragvqa ARGS...` in this process with replicas of the Ray executor that die once.

Usage: python ray_driver.py MARKER ragvqa-args...

The Ray executor's replicas are this file's `DyingReplica`: the first replica to be given a
reader batch creates the file MARKER and kills its own process with SIGKILL, as the kernel's
out-of-memory killer or a lost node would; Ray restarts it (a new process, which finds MARKER
and reads as usual) and the driver sends the lost batch again. With `RAY_DRIVER_DIE_IN=load`
in the environment the first replica dies the same way while it loads its parts instead, and
the driver loads it again. A class defined in `__main__` is
shipped to the actors by value, so the real executor runs, with this one change in its replica.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ragvqa.run.ray_executor as ray_executor
import ragvqa.run.replica as replica
from ragvqa.cli.main import app
from ragvqa.types import Answer

MARKER = Path(sys.argv[1]).resolve()
DIE_IN = os.environ.get("RAY_DRIVER_DIE_IN", "read")  # shipped with the class, by value


def die_once() -> bool:
    """Kill this process with SIGKILL if no replica has died yet (MARKER: who did)."""
    try:
        fd = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


class DyingReplica(replica.Replica):
    """A replica whose process dies on the first batch any replica is given (or, with
    `DIE_IN` "load", on the first load)."""

    def load(self) -> dict[str, Any]:
        if DIE_IN == "load":
            die_once()
        return super().load()

    def read(self, prompt: str, chunk: Sequence[Answer]) -> list[Answer]:
        if DIE_IN == "read":
            die_once()
        return super().read(prompt, chunk)


if __name__ == "__main__":
    ray_executor.REPLICA[0] = DyingReplica
    sys.argv = ["ragvqa", *sys.argv[2:]]
    app()
