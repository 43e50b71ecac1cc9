"""Where fetched files land in the data root: the checks before a download, the `.part` and
marker paths, and the check of a finished file against the catalogue.

Shared by the HTTP path (`ragvqa.fetch.fetch`) and the hub path (`ragvqa.fetch.fetch_hub`).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

from ragvqa.errors import UserError
from ragvqa.fetch.catalogue import Artefact, human_size
from ragvqa.io import sha256_file

MARKER_DIR = Path(".cache") / "ragvqa"


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def marker_path(artefact: Artefact, root: str | Path) -> Path:
    """Written after a complete hub snapshot fetch (a snapshot has no single file to test)."""
    return artefact.folder(root) / MARKER_DIR / f"{artefact.name}.done"


def matches(relative: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


def check_destination(folder: Path, need: int | None) -> None:
    """Refuse, before any request, a folder that cannot be written or lacks `need` free bytes."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create the destination folder ({exc.strerror or exc})", path=str(folder)
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK) or not _can_write(folder):
        raise UserError("destination folder is not writable", path=str(folder))
    if need:
        free = shutil.disk_usage(folder).free
        if free < need:
            raise UserError(
                f"not enough free space: {human_size(need)} needed, {human_size(free)} free",
                path=str(folder),
            )


def _can_write(folder: Path) -> bool:
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".ragvqa-write-test-")
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def reject_if_bad(path: Path, dest: Path, *, sha256: str | None, size: int | None) -> None:
    """Check a finished file against the catalogue; a bad one is moved aside next to `dest`."""
    if not sha256 and size is None:
        return
    actual = sha256_file(path)
    got = path.stat().st_size
    if sha256 and actual != sha256:
        problem = f"checksum mismatch (sha256 {actual[:12]}..., expected {sha256[:12]}...)"
    elif size is not None and got != size:
        problem = f"size mismatch ({got:,} bytes, expected {size:,})"
    else:
        return
    bad = dest.with_name(f"{dest.name}.bad-{actual[:8]}")
    os.replace(path, bad)
    raise UserError(f"{problem}; the file was moved aside to {bad.name}", path=str(dest))
