"""File I/O at the edges: JSON and JSONL reading with line numbers, atomic writes, file hashes.

Readers raise `UserError` naming the file and line of the first bad record, so a malformed
file never ends in a traceback; `read_json` is the one way ragvqa reads a JSON file. Writers go
through a temporary file and an atomic rename (`write_new`, for a file that must not exist
yet: a hard link, which never replaces one), so an interrupted run never leaves a half-written
output in place of a good one; the file put in place has the mode a plain `open()` gives (0666
less the umask), and a full disk or a read-only file system is a one-line `UserError` naming
the file. `check_outputs` (in `ragvqa.outputs`, re-exported here) refuses an output path that
is one of the command's inputs before any work is done.

A writer killed between creating its temporary file and the rename (`kill -9`, a power cut)
leaves the temporary file behind. Its name says who made it, `.<name>.<host>.<pid>.<8 hex>.tmp`,
and the next atomic write of the same target removes such siblings whose process is gone
(`remove_stale_temporaries`).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from ragvqa.errors import UserError
from ragvqa.outputs import PathLike, check_output_folder, check_outputs  # noqa: F401 (re-exported)

# errors of a write that the user fixes outside the program (space, quota, a read-only mount)
WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
# a temporary sibling whose owner cannot be shown dead (another host on a shared file system,
# a pid in use again, a name from before pids were recorded) is removed once it has not been
# written for this long: no writer leaves its output unwritten for a day
STALE_TEMPORARY_AGE = 24 * 3600
# what follows ".<name>." in a temporary sibling's name: "<host>.<pid>.<8 hex>.tmp", or the
# "<8 hex>.tmp" of earlier versions; the fixed ".<name>.tmp" of resumable builds is not matched
_TEMPORARY = re.compile(r"(?:([A-Za-z0-9-]{1,32})\.([0-9]{1,10})\.)?[0-9a-f]{8}\.tmp")
# `read_json`'s default for `missing`: a missing file is an error
REQUIRED: Any = object()
# a JSON value's kind by Python type, for "must be a JSON object, not an array"
_JSON_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number"}
_JSON_KINDS |= {float: "number", type(None): "null"}


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


def decoded_lines(text: IO[str], path: str | Path) -> Iterator[str]:
    """The lines of a file opened with `open_text`, ends kept, decoded one by one from its
    bytes, for line-oriented parsers such as `csv.reader`: a BOM at the start is dropped, and
    bytes that are not UTF-8 are reported with their line (a text stream's decoding error
    names none). Lines end at a line feed only (CRLF stays whole for the CSV parser).

    Raises:
        UserError: bytes that are not UTF-8, naming the file and line.
    """
    for lineno, raw in enumerate(text.buffer, start=1):
        try:
            yield raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError:
            raise UserError("not UTF-8 text", path=str(path), line=lineno) from None


def read_json(
    path: str | Path,
    *,
    what: str = "file",
    missing: Any = REQUIRED,
    expect: type | tuple[type, ...] | None = None,
    shape: str | None = None,
    invalid: str | None = None,
    max_bytes: int | None = None,
) -> Any:
    """The JSON document in a file (UTF-8), every problem a one-line `UserError` naming it.

    Args:
        what: What the file is, for the messages: "{what} not found", "cannot read {what}
            (...)", "{what} is not valid JSON (<error>, column C)" with the line, "{what} must
            be {shape}, not an array".
        missing: Returned when there is no file at `path` (a state file not written yet);
            without it, a missing file is an error.
        expect: The type(s) the top-level value must have (`dict`, `list`).
        shape: How `expect` reads in the message ("a JSON object {url: path}"); default
            "a JSON object" and so on.
        invalid: One message for a file that is not this kind of document (not UTF-8, not
            JSON, of another type or over `max_bytes`), followed by what was wrong in
            parentheses: "not a ragvqa KB build state; use a new --out folder (...)".
        max_bytes: A larger file is refused unread (a multi-GB file with the expected name).

    Raises:
        UserError: naming the file (and the line, for JSON that does not parse).
    """
    p = Path(path)

    def bad(detail: str, default: str, line: int | None = None) -> UserError:
        message = f"{invalid} ({detail})" if invalid else f"{what} {default}"
        return UserError(message, path=str(p), line=line)

    try:
        if max_bytes is not None and p.stat().st_size > max_bytes:
            raise bad(f"over {max_bytes} bytes", f"is over {max_bytes} bytes")
        raw = p.read_bytes()
    except FileNotFoundError:
        if missing is not REQUIRED:
            return missing
        raise UserError(f"{what} not found", path=str(p)) from None
    except IsADirectoryError:
        raise UserError(f"{what} is a folder, expected a file", path=str(p)) from None
    except OSError as exc:
        raise UserError(f"cannot read {what} ({exc.strerror})", path=str(p)) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad("not UTF-8 text", "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg}, column {exc.colno}"
        raise bad(detail, f"is not valid JSON ({detail})", exc.lineno) from None
    if expect is not None and not isinstance(data, expect):
        kinds = expect if isinstance(expect, tuple) else (expect,)
        wanted = shape or " or ".join(_a(f"JSON {_JSON_KINDS.get(t, t.__name__)}") for t in kinds)
        found = _a(_JSON_KINDS[type(data)])
        raise bad(f"found {found}", f"must be {wanted}, not {found}")
    return data


def _a(kind: str) -> str:
    """`kind` with its article: "an array", "a JSON object", "null"."""
    if kind == "null":
        return kind
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def head_tail_sha256(path: str | Path, *, block: int = 1 << 20) -> str:
    """A cheap fingerprint of a large file: the sha256 of its size and its first and last
    `block` bytes (the whole file when it is smaller than two blocks). Two reads, whatever the
    size: it notices a file truncated, replaced or changed near either end, where
    `sha256_file` notices any change at the cost of reading everything."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(f"{size}:".encode())
    with p.open("rb") as fh:
        h.update(fh.read(block))
        if size > block:
            fh.seek(max(block, size - block))
            h.update(fh.read())
    return h.hexdigest()


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of a JSONL file.

    Lines are decoded one by one (orjson where installed, with exactly the results of
    `json.loads`: see `ragvqa.jsonl`), so bytes that are not UTF-8 are reported on their own line.

    Raises:
        UserError: a line that is not JSON, or not a JSON object, or bytes that are not UTF-8.
    """
    from ragvqa.jsonl import read_objects

    with open_text(path) as text:
        yield from read_objects(text.buffer, path)


@contextmanager
def atomic_path(path: str | Path, *, fixed: bool = False) -> Iterator[Path]:
    """A temporary sibling path to write `path` through (any writer, text or binary: Arrow,
    safetensors, faiss, a memory-mapped array); renamed into place when the block ends.

    The temporary file is not created here: the writer creates it. On any exception it is
    removed and an existing file at `path` is untouched. Its name is
    `.<name>.<host>.<pid>.<8 hex>.tmp`; those that killed writers left for the same `path` are
    removed first (`remove_stale_temporaries`).

    Args:
        fixed: Use the same temporary name every time (`.<name>.tmp`) instead of a unique one,
            for large outputs of resumable builds with a single writer: what a killed run
            leaves is overwritten by the next attempt instead of piling up.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UserError("output folder does not exist", path=str(parent))
    if target.is_dir():
        raise UserError("is a folder, expected a file to write", path=str(target))
    if target.exists() and not target.is_file():  # /dev/null, a FIFO: never renamed over
        yield target
        return
    if fixed:
        tmp = parent / f".{target.name}.tmp"
    else:
        remove_stale_temporaries(target)
        tmp = parent / f".{target.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        yield tmp
        if tmp.is_file():  # whatever created it (mkstemp-like writers use 0600)
            os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in WRITE_ERRORS:
            raise UserError(f"cannot write ({exc.strerror})", path=str(target)) from None
        raise
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
            fh = tmp.open("x" if tmp != Path(path) else "w", encoding="utf-8")  # "w": /dev/null
        except OSError as exc:
            raise UserError(f"cannot write ({exc.strerror})", path=str(path)) from None
        with fh:
            yield fh


def write_json(path: str | Path, obj: Any) -> None:
    """Write one JSON document (indented, key order kept) atomically."""
    with atomic_writer(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def write_new(path: str | Path, text: str, *, exists: str = "exists already") -> None:
    """Write a text file that must not exist yet, whole or not at all: a temporary sibling is
    hard-linked into place (a link, unlike a rename, never replaces a file), so a file there,
    even one a racing writer just made, is never overwritten. Missing folders are made.

    Raises:
        UserError: `exists` when the file exists; a write that failed, naming the file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.link(tmp, target)
    except FileExistsError:
        raise UserError(exists, path=str(target)) from None
    except OSError as exc:
        raise UserError(f"cannot write ({exc.strerror})", path=str(target)) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write JSON lines atomically, one compact object per line."""
    import jsonlines

    with atomic_writer(path) as fh:
        writer = jsonlines.Writer(fh, compact=True, sort_keys=False)
        writer.write_all(rows)


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary siblings of `path` that dead writers left (`kill -9` in the middle
    of an atomic write); returns those removed. Only names of `atomic_path`'s pattern are
    touched, `.<name>.<host>.<pid>.<8 hex>.tmp`, and only when the process that made one is
    gone: the host is this one and no process has that pid. One that this cannot tell (another
    host, a pid in use again, an older name without a pid) goes once it is
    `STALE_TEMPORARY_AGE` old (by its modification time). Never raises."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    prefix = f".{target.name}."
    removed: list[Path] = []
    now = time.time()
    try:
        with os.scandir(parent) as entries:
            candidates = [e for e in entries if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in candidates:
        match = _TEMPORARY.fullmatch(entry.name[len(prefix) :])
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                continue
            host, pid = match.group(1), match.group(2)
            dead = host == _host() and pid is not None and not _alive(int(pid))
            if dead or now - info.st_mtime > STALE_TEMPORARY_AGE:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone already, or not ours to remove: leave it
            continue
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a pid that cannot be one counts as
    alive: nothing is removed on its word)."""
    if pid <= 0 or pid > 1 << 22:  # pid_max is at most 2^22 on Linux
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, as another user's
        return True
    return True


@functools.cache
def _host() -> str:
    """This host's name as it goes into a temporary file name (letters, digits, "-")."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:32]
    return name or "host"


def umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status)."""
    with suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and put back (not thread-safe, hence the above)
    os.umask(mask)
    return mask


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
