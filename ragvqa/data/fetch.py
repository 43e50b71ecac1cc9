"""Fetching catalogue artefacts into a data root: resumable, checksummed, atomic.

HTTP(S) files (`download`, standard library only):
- bytes stream into `<dest>.part`; a later run resumes it with `Range: bytes=N-` (a server that
  answers 200 instead of 206 sends the whole file, and the part is rewritten from byte 0);
- connection errors, timeouts, HTTP 5xx / 408 / 429 are retried with exponential backoff
  (`RetryPolicy`); an attempt that added bytes resets the count; giving up is one `UserError`;
- the finished part is checked (sha256 where the catalogue has one, exact sizes) and renamed into
  place; a file that fails is moved aside to `<dest>.bad-<first 8 hex of its sha256>`;
- disk full while writing: one `UserError`; the `.part` stays, so the same command resumes once
  space is freed, and nothing is ever left at `<dest>` itself;
- before any request: the destination folder must be writable and have free space for the
  bytes still missing (catalogue size minus the part already there).

Hub artefacts go through `ragvqa.data.fetch_hub` (huggingface_hub). Manual artefacts are never
fetched; `fetch` returns their instructions.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragvqa import __version__
from ragvqa.data.catalogue import Artefact, human_size
from ragvqa.errors import UserError

PRESENT, PARTIAL, ABSENT = "present", "partial", "absent"
CHUNK = 1 << 20
MARKER_DIR = Path(".cache") / "ragvqa"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `attempts` in a row without progress, sleeping `backoff` seconds after
    the first failure and doubling up to `max_backoff`; `timeout` seconds of socket silence."""

    attempts: int = 5
    backoff: float = 2.0
    max_backoff: float = 60.0
    timeout: float = 30.0


@dataclass(frozen=True)
class FetchResult:
    name: str
    outcome: str  # "fetched" | "present" | "manual"
    path: Path
    instructions: str | None = None


class _Retry(Exception):
    """A transient failure; the next attempt resumes from the part on disk."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def marker_path(artefact: Artefact, root: str | Path) -> Path:
    """Written after a complete hub snapshot fetch (a snapshot has no single file to test)."""
    return artefact.folder(root) / MARKER_DIR / f"{artefact.name}.done"


def status(artefact: Artefact, root: str | Path) -> str:
    """`present`, `partial` (a resumable part, or a snapshot begun) or `absent` under `root`."""
    path = artefact.path(root)
    if artefact.kind == "url":
        if path.is_file():
            return PRESENT
        return PARTIAL if part_path(path).is_file() else ABSENT
    if artefact.kind == "manual":
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            return PRESENT
        return ABSENT
    folder = artefact.folder(root)
    if artefact.filename:
        if path.is_file():
            return PRESENT
        return PARTIAL if _hub_incomplete(folder) else ABSENT
    if marker_path(artefact, root).is_file():
        return PRESENT
    return PARTIAL if _hub_incomplete(folder) or _snapshot_files(artefact, folder) else ABSENT


def _hub_incomplete(folder: Path) -> bool:
    downloads = folder / ".cache" / "huggingface" / "download"
    return downloads.is_dir() and any(downloads.rglob("*.incomplete"))


def _snapshot_files(artefact: Artefact, folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    files = [
        p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts
    ]
    if not artefact.include:
        return files
    return [p for p in files if matches(p.relative_to(folder).as_posix(), artefact.include)]


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    size: int | None = None,
    size_exact: bool = False,
    sha256: str | None = None,
    policy: RetryPolicy = RetryPolicy(),
    progress: bool = True,
) -> Path:
    """Download `url` to `dest` (see the module docstring); returns `dest`."""
    dest = Path(dest)
    part = part_path(dest)
    have = part.stat().st_size if part.is_file() else 0
    check_destination(dest.parent, max(size - have, 0) if size else None)
    with _Bar(progress, dest.name) as bar:
        failures = 0
        while True:
            before = part.stat().st_size if part.is_file() else 0
            try:
                _attempt(url, part, policy, bar)
                break
            except _Retry as exc:
                grew = (part.stat().st_size if part.is_file() else 0) > before
                failures = 1 if grew else failures + 1
                if failures >= policy.attempts:
                    raise UserError(
                        f"cannot download {url}: {exc} "
                        f"({policy.attempts} attempts without progress)"
                    ) from None
                time.sleep(min(policy.backoff * 2 ** (failures - 1), policy.max_backoff))
    reject_if_bad(part, dest, sha256=sha256, size=size if size_exact else None)
    os.replace(part, dest)
    return dest


def _attempt(url: str, part: Path, policy: RetryPolicy, bar: _Bar) -> None:
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"ragvqa/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=policy.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            if _range_total(exc.headers) == offset:  # the part is already the whole file
                return
            part.unlink()  # the part does not fit the server's file: start over
            raise _Retry("the server refused to resume (HTTP 416); restarting") from None
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise UserError(f"HTTP {exc.code} {exc.reason} for {url}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Retry(_reason(exc, policy)) from None
    with response:
        mode = "ab"
        if response.status == 206 and _range_start(response.headers) != offset:
            part.unlink(missing_ok=True)
            raise _Retry("the server sent another byte range; restarting")
        if response.status != 206:
            offset, mode = 0, "wb"  # the whole file again (a server that ignores Range)
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length and length.isdigit() else None
        bar.reset(offset, expected)
        try:
            with part.open(mode) as out:
                _copy(response, out, bar, policy)
        except OSError as exc:
            raise _write_error(exc, part) from None
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise _Retry(f"connection closed after {got:,} of {expected:,} bytes")


def _copy(response: Any, out: Any, bar: _Bar, policy: RetryPolicy) -> None:
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            out.flush()
            raise _Retry(_reason(exc, policy)) from None
        if not chunk:
            return
        _write_chunk(out, chunk)
        bar.advance(len(chunk))


def _write_chunk(out: Any, chunk: bytes) -> None:
    out.write(chunk)


def _range_start(headers: Any) -> int | None:
    match = re.match(r"bytes (\d+)-", headers.get("Content-Range") or "")
    return int(match.group(1)) if match else None


def _range_total(headers: Any) -> int | None:
    match = re.match(r"bytes \*/(\d+)$", (headers.get("Content-Range") or "").strip())
    return int(match.group(1)) if match else None


def _reason(exc: BaseException, policy: RetryPolicy) -> str:
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, TimeoutError) or isinstance(exc, TimeoutError):
        return f"timed out (no data for {policy.timeout:g} s)"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed early"
    return str(inner) or type(inner).__name__


def _write_error(exc: OSError, part: Path) -> UserError:
    if exc.errno == errno.ENOSPC:
        return UserError(
            "disk full while downloading; free some space and run the same command to resume "
            "(or delete the .part file)",
            path=str(part),
        )
    return UserError(f"cannot write ({exc.strerror or exc})", path=str(part))


def reject_if_bad(path: Path, dest: Path, *, sha256: str | None, size: int | None) -> None:
    """Check a finished file against the catalogue; a bad one is moved aside next to `dest`."""
    if not sha256 and size is None:
        return
    actual = sha256_of(path)
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


class _Bar:
    """A rich download bar on stderr (bytes, speed, ETA), or nothing."""

    def __init__(self, enabled: bool, label: str):
        self.enabled, self.label = enabled, label
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=None)
        return self

    def reset(self, completed: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress.reset(self.task, completed=completed, total=total)

    def advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()


def fetch(
    artefact: Artefact,
    root: str | Path,
    *,
    policy: RetryPolicy = RetryPolicy(),
    progress: bool = True,
) -> FetchResult:
    """Bring one artefact under `root`; a present one is left alone, a manual one is not
    fetched (its instructions come back in the result)."""
    path = artefact.path(root)
    if status(artefact, root) == PRESENT:
        return FetchResult(artefact.name, "present", path)
    if artefact.kind == "manual":
        return FetchResult(artefact.name, "manual", path, artefact.instructions)
    if artefact.kind == "url":
        assert artefact.url is not None
        download(
            artefact.url,
            path,
            size=artefact.size,
            size_exact=artefact.size_exact,
            sha256=artefact.sha256,
            policy=policy,
            progress=progress,
        )
    else:
        from ragvqa.data.fetch_hub import fetch_hub

        fetch_hub(artefact, root)
    return FetchResult(artefact.name, "fetched", path)
