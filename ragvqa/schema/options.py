"""Command-line options made from a settings model's fields, and the options' values checked
by the same model: one name, default, help and check for a setting, in the file and on the
command line.

`option(KBSource, "max_tokens")` is `--max-tokens` with the field's default and description;
more names (the old `--type` of `kind`) are aliases. `from_options(KBSource, values)` checks the
values as a pipeline file's would be checked and says what is wrong in one line naming the
option ("--chunking: expected one of section, tokens, got 'token'; did you mean 'tokens'?").
`flags(command)` lists a command's option names, for the test that every field has one.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from ragvqa.errors import UserError, did_you_mean
from ragvqa.schema.base import constraints, field_description, optional_parts

M = TypeVar("M", bound=BaseModel)


def flag(name: str) -> str:
    """A field's option name: `max_tokens` -> `--max-tokens`."""
    return "--" + name.replace("_", "-")


def option(model: type[BaseModel], name: str, *aliases: str, **extra: Any) -> Any:
    """A Typer option for field `name` of `model`: its flag, the old names `aliases`, the
    field's default (a required field: required) and its description as the help."""
    field = model.model_fields[name]
    default = ... if field.is_required() else field.default
    help_text = (field.description or "").replace("`", "")
    if choices := _choices(field):
        help_text += f" ({' | '.join(choices)})"
    return typer.Option(default, flag(name), *aliases, help=help_text, **extra)


def _choices(field: Any) -> list[str]:
    """The values a `Literal` field takes (none for other fields)."""
    bare = constraints(optional_parts(field.annotation)[0])[0]
    return [str(c) for c in typing.get_args(bare)] if typing.get_origin(bare) is Literal else []


def from_options(model: type[M], values: Mapping[str, Any]) -> M:
    """`values` (option values by field name) checked by `model`; a bad one is one line."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = str(error["loc"][0])
        field, value = model.model_fields[name], error.get("input")
        choices = _choices(field)
        hint = did_you_mean(value, choices) if isinstance(value, str) and choices else ""
        expected = field_description(field)
        raise UserError(f"{flag(name)}: expected {expected}, got {value!r}{hint}") from None


def flags(command: Any) -> set[str]:
    """Every option name of a Click command (a Typer command: `typer.main.get_command`)."""
    return {name for param in command.params for name in getattr(param, "opts", ())}
