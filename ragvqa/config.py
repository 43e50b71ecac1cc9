"""YAML configuration: files with `base:` inheritance, `a.b=c` overrides, and components.

A config file is a YAML mapping. `base: other.yaml` (relative to the file) names a file whose
mapping this one extends: nested mappings merge key by key, anything else is replaced. An
override "reader.sampling.max_tokens=64" sets one nested key; its value is read as YAML, so
numbers, booleans and lists work ("a.b=[1, 2]"). A component is a mapping with a `type` (a
registry key) and the arguments of that component: `build(RERANKERS, {"type":
"cross_encoder", "model": "BAAI/bge-reranker-base", "alpha": 0.5})`.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.registry import Registry


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("config file not found", path=str(p)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise UserError(
            f"not valid YAML ({getattr(exc, 'problem', exc)})", path=str(p), line=line
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("a config file must be a YAML mapping", path=str(p))
    return data


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`: mappings merge recursively, other values replace."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_override(data: dict[str, Any], override: str) -> None:
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


def load_config(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), _seen: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """A config file with its `base:` chain merged and the overrides applied."""
    p = Path(path).resolve()
    if p in _seen:
        chain = " -> ".join(str(s) for s in (*_seen, p))
        raise UserError(f"config files inherit from each other in a cycle: {chain}")
    data = read_yaml(p)
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise UserError("base: must be a file name", path=str(p))
        data = merge(load_config(p.parent / base, (), (*_seen, p)), data)
    for override in overrides:
        set_override(data, override)
    return data


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
