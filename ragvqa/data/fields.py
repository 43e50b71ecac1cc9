"""Small typed accessors for records read from JSONL files, with file:line errors."""

from __future__ import annotations

from typing import Any

from ragvqa.errors import UserError


def get_str(obj: dict[str, Any], key: str, path: str, line: int, *, required: bool = True) -> str:
    """Return obj[key] as a string; a missing key (when required) or a non-string is an error."""
    if key not in obj or obj[key] is None:
        if required:
            raise UserError(f"missing field '{key}'", path=path, line=line)
        return ""
    value = obj[key]
    if not isinstance(value, str):
        raise UserError(
            f"field '{key}' must be a string, got {type(value).__name__}", path=path, line=line
        )
    return value


def get_str_list(obj: dict[str, Any], key: str, path: str, line: int) -> tuple[str, ...]:
    """Return obj[key] as a tuple of strings (absent -> empty); other types are an error."""
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"field '{key}' must be a list of strings", path=path, line=line)
    return tuple(value)
