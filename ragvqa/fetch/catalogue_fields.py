"""Field checks of the data catalogue's entries, each raising the entry's own one-line error.

Every function takes the raw YAML value and `fail`, the entry's error builder (`fail(problem)`
returns a `UserError` naming the entry), and returns the checked value.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

REPO_TYPES = ("model", "dataset")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def relative(value: str, key: str, fail: Any) -> str:
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or "\\" in value:
        raise fail(f"{key!r} must be a relative path without '..', not {value!r}")
    return str(pure)


def files_sha256(value: Any, fail: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not value:
        raise fail("'files_sha256' must map paths under dest to sha256 digests")
    pairs = []
    for path, sha in value.items():
        if not isinstance(sha, str) or not SHA256.match(sha):
            raise fail(f"'files_sha256' of {path!r} must be 64 lower-case hex digits")
        pairs.append((relative(str(path), "files_sha256", fail), sha))
    return tuple(pairs)


def dest(value: str, fail: Any) -> str:
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or "\\" in value or value.startswith("~"):
        raise fail(f"dest must be a relative path under the data root, not {value!r}")
    return str(pure)


def strings(value: Any, key: str, fail: Any, *, required: bool = False) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail(f"{key!r} must be a non-empty list of strings")
    return tuple(value)


def count(value: Any, key: str, fail: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(f"{key!r} must be a whole number of bytes/records or null, not {value!r}")
    return value


def flag(value: Any, fail: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(f"'size_exact' must be true or false, not {value!r}")
    return value


def sha256_hex(value: Any, fail: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256.match(value):
        raise fail("'sha256' must be 64 lower-case hex digits or null")
    return value


def url(value: Any, fail: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise fail(f"'url' must be an http(s) URL, not {value!r}")
    return value


def repo(value: Any, fail: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.count("/") != 1 or not all(value.split("/")):
        raise fail(f"'repo' must look like org/name, not {value!r}")
    return value


def repo_type(value: Any, fail: Any) -> str:
    if value is None:
        return "model"
    if value not in REPO_TYPES:
        raise fail(f"'repo_type' must be one of {', '.join(REPO_TYPES)}, not {value!r}")
    return value


def optional_str(value: Any, key: str, fail: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{key!r} must be a non-empty string")
    return value.strip() if key == "instructions" else value


def include(entry: dict[str, Any], fail: Any) -> tuple[str, ...]:
    include = strings(entry.get("include"), "include", fail)
    if include and entry.get("filename"):
        raise fail("give either 'filename' or 'include', not both")
    return include
