"""Check a resolved pipeline mapping against the schema; a problem is one `UserError` line.

The line names the file that set the bad key (a `base:` file, or the `--set` override), its
line, the dotted key and what the key takes: "pipelines/mine.yaml:7: retrieval.topk: unknown
key; did you mean 'top_k'? (known: top_k, one_per_page, mode)". No model or component is
loaded (a component type's module is imported: its class names its schema, or its signature is
its schema).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ragvqa.config import Key, Origin, Origins
from ragvqa.errors import UserError, did_you_mean
from ragvqa.registry import READERS, RERANKERS, Registry
from ragvqa.schema.base import (
    constraints,
    describe,
    field_at,
    model_at,
    optional_parts,
)
from ragvqa.schema.components import args_of
from ragvqa.schema.sections import PipelineConfig

REMOTE_CODE = "trust_remote_code"
GENERATOR_KEY = ("reader", "generator")
RERANK_KEY = ("rerank",)


class Checker:
    """Turns schema violations of one pipeline into one-line errors naming where they are."""

    def __init__(self, origins: Origins | None, name: str | None):
        self.origins, self.name = origins or {}, name

    def fail(self, key: tuple[Any, ...], problem: str) -> UserError:
        origin, exact = self._origin(key)
        dotted = dotted_key(key)
        if origin.override is not None and exact:
            dotted = f"{dotted} (from --set {origin.override})"
        elif origin.override is not None:
            problem = f"{problem} (after --set {origin.override})"
        return UserError(f"{dotted}: {problem}", path=origin.file or self.name, line=origin.line)

    def _origin(self, key: tuple[Any, ...]) -> tuple[Origin, bool]:
        """Who set `key`, the mapping around it or a key inside it (True); else the first key
        set beside it, as for a missing key in a mapping an override made (False)."""
        parts = tuple(str(p) for p in key)
        for end in range(len(parts), 0, -1):
            if parts[:end] in self.origins:
                return self.origins[parts[:end]], True
        # a key nobody set itself, with keys set inside it (`--set retrival.top_k=3`)
        below = [o for k, o in self.origins.items() if k[: len(parts)] == parts]
        if below:
            return below[0], True
        inside = [o for k, o in self.origins.items() if k[: len(parts) - 1] == parts[:-1]]
        return (inside[0] if inside else Origin(self.name)), False

    def validate(self, model: type[BaseModel], data: Any, prefix: Key = ()) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            first = errors[0]
            problem = self._problem(model, first, prefix)
            if len(errors) > 1:
                problem += f" ({len(errors) - 1} more problem(s) after this one)"
            raise self.fail((*prefix, *first["loc"]), problem) from None

    def _problem(self, model: type[BaseModel], error: Mapping[str, Any], prefix: Key) -> str:
        loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
        if kind == "extra_forbidden":
            parent = model_at(model, loc[:-1])
            known = list(parent.model_fields) if parent is not None else []
            what = "unknown pipeline section" if not prefix and len(loc) == 1 else "unknown key"
            return unknown_name(what, str(loc[-1]), known)
        field = field_at(model, loc)
        expected = describe(field.annotation, field.metadata) if field is not None else None
        if kind == "missing":
            return f"missing (expected {expected or 'a value'})"
        if expected is None:  # inside a list or a mapping: pydantic's words
            return error["msg"].replace("Input should be", "expected") + f", got {shown(value)}"
        hint = ""
        if kind == "literal_error" and isinstance(value, str):
            hint = did_you_mean(value, [str(a) for a in literal_args(field)])
        return f"expected {expected}, got {shown(value)}{hint}"


def validate_pipeline(
    config: Mapping[str, Any],
    *,
    origins: Origins | None = None,
    name: str | None = None,
    trust_remote_code: bool = False,
) -> PipelineConfig:
    """The typed pipeline, or a `UserError` naming the first bad key. Component sections are
    checked against their type's arguments; `trust_remote_code: true` in the mapping is refused
    unless the command line allowed it (`trust_remote_code=True`)."""
    checker = Checker(origins, name)
    typed = checker.validate(PipelineConfig, dict(config))
    reader = config.get("reader") or {}
    generator = reader.get("generator")
    if generator is not None:
        args = check_component(checker, READERS, generator, GENERATOR_KEY)
        wants = getattr(args, REMOTE_CODE, None)
        if wants and not trust_remote_code:
            raise checker.fail(
                (*GENERATOR_KEY, REMOTE_CODE),
                "pass --trust-remote-code on the command line to let the model's repository run "
                "its own code on this machine (a pipeline file alone cannot turn it on)",
            )
    if config.get("rerank"):
        check_component(checker, RERANKERS, config["rerank"], RERANK_KEY)
    return typed


def check_component(
    checker: Checker,
    registry: Registry,
    spec: Any,
    key: Key,
) -> Any:
    """A component's arguments checked against its type's schema (a plug-in type without
    one: against its constructor's signature). Null generator arguments mean "unset"."""
    if not isinstance(spec, Mapping):
        raise checker.fail(key, f"expected a mapping with a 'type', got {shown(spec)}")
    kind = spec.get("type")
    names = registry.names()
    if kind is None:
        raise checker.fail((*key, "type"), f"missing (expected one of {', '.join(names)})")
    if not isinstance(kind, str) or kind not in registry:
        hint = did_you_mean(str(kind), names)
        problem = f"unknown {registry.kind} {kind!r} (known: {', '.join(names)}){hint}"
        raise checker.fail((*key, "type"), problem)
    args = {k: v for k, v in spec.items() if k != "type"}
    if key == GENERATOR_KEY:
        args = {k: v for k, v in args.items() if v is not None}
    schema = args_of(registry, kind)
    if schema is None:
        return check_signature(checker, registry.get(kind), args, key)
    typed = checker.validate(schema, args, key)
    passed = getattr(typed, "engine_args", None) or {}
    for name in passed:
        if name in schema.model_fields:
            raise checker.fail(
                (*key, "engine_args", name), f"set {dotted_key((*key, name))} instead"
            )
    return typed


def check_signature(checker: Checker, target: Any, args: Mapping[str, Any], key: Key) -> None:
    """A plug-in component's arguments against its constructor: unknown names are refused."""
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for name in args:
        if name not in known:
            raise checker.fail((*key, name), unknown_name("unknown argument", name, known))


def unknown_name(what: str, name: str, known: list[str]) -> str:
    """ "unknown key; did you mean 'top_k'? (known: ...)" (the key itself is named before)."""
    hint = did_you_mean(name, known)
    return f"{what}{hint} (known: {', '.join(known)})"


def literal_args(field: Any) -> tuple[Any, ...]:
    """The values a `Literal` field allows (empty for other fields)."""
    inner = constraints(optional_parts(field.annotation)[0])[0]
    return typing.get_args(inner) if typing.get_origin(inner) is typing.Literal else ()


def dotted_key(key: tuple[Any, ...]) -> str:
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def shown(value: Any) -> str:
    """A YAML value in an error message, with its kind where quoting matters."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value)
