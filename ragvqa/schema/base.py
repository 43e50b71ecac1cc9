"""The base of every pipeline section's schema, and plain-words descriptions of its types.

A section is a pydantic model that is strict (no "no" -> false, no "5" -> 5; an integer is
still a number) and refuses keys it does not declare. `describe` says in words what a field
takes ("integer >= 1", "null or one of chat, plain"): the reference page and the one-line errors
both use it, so the two say the same thing.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

Count = Annotated[int, at.Ge(1)]  # an integer >= 1
Size = Annotated[int, at.Ge(0)]  # an integer >= 0 (0: "choose for me" where a field says so)
Fraction = Annotated[float, at.Ge(0), at.Le(1)]


class Section(BaseModel):
    """A mapping in a pipeline file: strict types, no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Each field's default, by name (required fields have none): what a runtime dataclass
    fed by the section takes as its own defaults, so they are defined once, here."""
    return {name: f.default for name, f in model.model_fields.items() if not f.is_required()}


def optional_parts(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        rest = args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
        return rest, len(args) < len(typing.get_args(annotation))
    return annotation, False


def constraints(annotation: Any, metadata: list[Any] = ()) -> tuple[Any, list[Any]]:
    """(the bare type, its annotated_types bounds) of an `Annotated[...]` annotation."""
    found = list(metadata)
    while typing.get_origin(annotation) is Annotated:
        annotation, *extra = typing.get_args(annotation)
        found += extra
    return annotation, found


def _bounds(found: list[Any]) -> str:
    words = []
    for c in found:
        for name, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(c, name, None) is not None and isinstance(c, at.BaseMetadata):
                words.append(f"{sign} {getattr(c, name)}")
    return " and ".join(words)


def describe(annotation: Any, metadata: list[Any] = ()) -> str:
    """What a field takes, in words: "integer >= 1", "null or string", "mapping"."""
    inner, nullable = optional_parts(annotation)
    inner, found = constraints(inner, list(metadata))
    text = _describe_bare(inner)
    bounds = _bounds(found)
    if bounds:
        text = f"{text} {bounds}"
    return f"null or {text}" if nullable else text


def _describe_bare(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is list:
        return f"list of {describe(args[0])}"
    if origin is dict and args[1] is Any:
        return "mapping"
    if origin is dict:
        return f"mapping of {describe(args[0])} to {describe(args[1])}"
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return "mapping"
    names = {bool: "true or false", int: "integer", float: "number", str: "string"}
    return names.get(kind, "any value")


def field_description(info: FieldInfo) -> str:
    return describe(info.annotation, info.metadata)


def model_at(model: type[BaseModel], key: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model found at `key` inside `model` (None when `key` is not a section)."""
    current: Any = model
    parts = list(key)
    while parts:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(parts.pop(0)))
        if field is None:
            return None
        current = constraints(optional_parts(field.annotation)[0])[0]
        while typing.get_origin(current) in (dict, list) and parts:
            parts.pop(0)  # a mapping's key or a list's index
            current = constraints(optional_parts(typing.get_args(current)[-1])[0])[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def field_at(model: type[BaseModel], key: tuple[Any, ...]) -> FieldInfo | None:
    """The field declared at `key` (a dotted path of section names, then the field's name)."""
    parent = model_at(model, key[:-1]) if key else None
    return parent.model_fields.get(str(key[-1])) if parent is not None else None
