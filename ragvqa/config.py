"""YAML configuration: files with `base:` inheritance, `a.b=c` overrides, and components.

A config file is a YAML mapping. `base: other.yaml` (relative to the file) names a file whose
mapping this one extends: nested mappings merge key by key, anything else is replaced. An
override "reader.sampling.max_tokens=64" sets one nested key; its value is read as YAML, so
numbers, booleans and lists work ("a.b=[1, 2]"). A component is a mapping with a `type` (a
registry key) and the arguments of that component: `build(RERANKERS, {"type":
"cross_encoder", "model": "BAAI/bge-reranker-base", "alpha": 0.5})`.

`load_located` also says where every key came from (`Origins`: the file and line, or the
`--set` override, that set it last), so that a bad value found after the `base:` chain is
merged is reported against the file the user has to edit (`ragvqa.schema` uses it).
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any, NamedTuple

from ragvqa.errors import UserError
from ragvqa.registry import Registry

Key = tuple[str, ...]


class Origin(NamedTuple):
    """Where a key was set: a file (and the key's line), or a `--set` override (file None)."""

    file: str | None
    line: int | None = None
    override: str | None = None


Origins = dict[Key, Origin]


def _key_lines(node: Any, prefix: Key, out: dict[Key, int]) -> None:
    """The line of every key of a YAML mapping node, nested keys included (1-based)."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = (*prefix, str(key_node.value))
            out[key] = key_node.start_mark.line + 1
            _key_lines(value_node, key, out)


def read_located(path: str | Path) -> tuple[dict[str, Any], dict[Key, int]]:
    """A YAML mapping file, and the line of each of its keys."""
    import yaml

    p = Path(path)
    try:
        loader = yaml.SafeLoader(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("config file not found", path=str(p)) from None
    except IsADirectoryError:
        raise UserError("a config file must be a file, not a folder", path=str(p)) from None
    except UnicodeDecodeError:
        raise UserError("a config file must be UTF-8 text", path=str(p)) from None
    lines: dict[Key, int] = {}
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        _key_lines(node, (), lines)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise UserError(
            f"not valid YAML ({getattr(exc, 'problem', exc)})", path=str(p), line=line
        ) from None
    finally:
        loader.dispose()
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise UserError("a config file must be a YAML mapping", path=str(p))
    return data, lines


def read_yaml(path: str | Path) -> dict[str, Any]:
    return read_located(path)[0]


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`: mappings merge recursively, other values replace."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _get(data: Any, key: Key) -> Any:
    for part in key:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _set_origin(origins: Origins, key: Key, origin: Origin) -> None:
    """`key` was set by `origin`: what an earlier source set below it is gone."""
    for stale in [k for k in origins if k[: len(key)] == key]:
        del origins[stale]
    origins[key] = origin


def set_override(data: dict[str, Any], override: str, origins: Origins | None = None) -> None:
    """Apply one "a.b.c=value" override in place (the value is parsed as YAML)."""
    import yaml

    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {override!r} must look like key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"override {override!r}: {part!r} is not a mapping")
        node = child
    node[parts[-1]] = value
    if origins is not None:
        _set_origin(origins, tuple(parts), Origin(None, None, override))


def load_located(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), _seen: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], Origins]:
    """A config file with its `base:` chain merged and the overrides applied, and where each
    of its keys was set."""
    p = Path(path).resolve()
    if p in _seen:
        chain = " -> ".join(str(s) for s in (*_seen, p))
        raise UserError(f"config files inherit from each other in a cycle: {chain}")
    own, lines = read_located(p)
    base = own.pop("base", None)
    inherited: dict[str, Any] = {}
    origins: Origins = {}
    if base is not None:
        if not isinstance(base, str):
            raise UserError("base: must be a file name", path=str(p), line=lines.get(("base",)))
        inherited, origins = load_located(p.parent / base, (), (*_seen, p))
    data = merge(inherited, own)
    shown = str(path) if not _seen else str(p)
    for key, line in sorted(lines.items(), key=lambda item: len(item[0])):
        if key == ("base",):
            continue
        if isinstance(_get(own, key), dict) and isinstance(_get(inherited, key), dict):
            origins[key] = Origin(shown, line)  # merged: the inherited keys inside stay
        else:
            _set_origin(origins, key, Origin(shown, line))
    for override in overrides:
        set_override(data, override, origins)
    return data, origins


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A config file with its `base:` chain merged and the overrides applied."""
    return load_located(path, overrides)[0]


def build(registry: Registry, spec: dict[str, Any] | None, **extra: Any) -> Any:
    """The component a spec describes: registry[spec["type"]](**spec args, **extra)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise UserError(
            f"a {registry.kind} needs a mapping with a 'type' (one of "
            f"{', '.join(registry.names())})"
        )
    target = registry.get(spec["type"])
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    kwargs.update(extra)
    try:
        inspect.signature(target).bind(**kwargs)
    except TypeError as exc:
        raise UserError(f"{registry.kind} {spec['type']!r}: {exc}") from None
    return target(**kwargs)
