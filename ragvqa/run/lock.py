"""An exclusive lock on a folder, so that two processes never write one folder at once.

Every command that writes a folder takes it: `bench` (the run folder, `ragvqa.run.folder`),
`kb build`, `index build` and `train retriever` (`--out`), `data fetch` (the data root),
`report` (the folder of the page it writes) and `demo` (its world), through `FolderLock` or
`locked_folder` (which also creates the folder, and removes what it created if it is still empty
at the end).

The lock is an OS file lock (`fcntl.flock`) on a lock file in the folder: the kernel releases it
when its holder exits, however it exits (a crash or `kill -9` leaves no stale lock behind, only
the file). The holder writes who it is into the file (pid, host, start time, command), so that a
second process can say who holds the folder. The holder removes the file when it releases the
lock; a process that locked a file just removed by its previous holder sees that the path no
longer names its file and tries again.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from ragvqa.errors import UserError

LOCK = ".ragvqa.lock"


class FolderLock:
    """`with FolderLock(folder): ...` holds `folder`'s lock or raises `UserError` at once.

    `hint` ends the refusal: what the user can do besides waiting ("use another --out")."""

    def __init__(self, folder: str | Path, *, hint: str = "use another --out"):
        self.path = Path(folder) / LOCK
        self.hint = hint
        self.fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises:
            UserError: another process holds it (its pid, host and start time are named).
        """
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise UserError(f"cannot lock ({exc.strerror})", path=str(self.path)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise UserError(
                    f"in use by {holder}: wait for it to end, or {self.hint}",
                    path=str(self.path.parent),
                ) from None
            if _is_current(fd, self.path):
                break
            os.close(fd)  # its holder removed it while we waited for it: lock the new one
        self.fd = fd
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (closing the file releases it)."""
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None


@contextlib.contextmanager
def locked_folder(folder: str | Path, *, hint: str = "use another --out") -> Iterator[Path]:
    """Hold `folder`'s lock while the block runs, creating the folder (and its parents) when
    missing; the folders it created are removed again when they are still empty at the end (a
    command that failed before writing anything leaves nothing behind).

    Raises:
        UserError: `folder` is a file or cannot be created, or another process holds its lock.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError("is a file, expected a folder", path=str(folder))
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the folder ({exc.strerror})", path=str(folder)) from None
    try:
        with FolderLock(folder, hint=hint):
            yield folder
    finally:
        for path in made:  # deepest first
            if not path.is_dir() or any(path.iterdir()):
                break
            with contextlib.suppress(OSError):
                path.rmdir()


def _is_current(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _read(fd: int) -> str:
    """Who holds the lock, in words, from the record its holder wrote."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        pid, host, started = data["pid"], data["host"], data["started"]
        return f"another ragvqa process (pid {pid} on {host}, since {started})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another ragvqa process"  # it has not written its record yet
