"""docs/pipeline-reference.md, written from the schema: every section, key, type and default.

`python -m ragvqa.schema --markdown > docs/pipeline-reference.md` regenerates it;
tests/test_config_schema.py fails when the page and the schema disagree.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ragvqa.registry import READERS, RERANKERS
from ragvqa.schema.base import field_description, model_at
from ragvqa.schema.components import component_args
from ragvqa.schema.sections import PipelineConfig

COMMAND = "python -m ragvqa.schema --markdown > docs/pipeline-reference.md"

INTRO = f"""\
# Pipeline reference

<!-- Generated from ragvqa/schema/ by `{COMMAND}`: edit the schema, not this page. -->

Every key a pipeline file (`pipelines/*.yaml`) may hold, what it takes and its default. How
pipelines are used is in [Answering questions and running benchmarks](running.md).

- `base: other.yaml` (relative to the file) inherits a file: mappings merge key by key, other
  values replace; `--set a.b=c` on the command line sets one key (its value read as YAML).
- The whole result is checked when the pipeline loads, before any model: an unknown key (with
  a did-you-mean), a value of the wrong type or out of range is one line naming the file (or
  the `--set`), the line, the dotted key and what it takes; exit status 2.
- Types are strict: `'no'`, `'false'` or `'5'` in quotes are strings, not a boolean or an
  integer (a YAML `no` or `false` without quotes is a boolean); an integer is also a number.
- Paths are read against the pipeline file's folder; `${{RAGVQA_CACHE}}` and
  `${{RAGVQA_DATA}}` are expanded.
- A component (`reader.generator`, `rerank`) is a `type` and that type's own arguments.
- `trust_remote_code` (running code from a model's repository) is never turned on by a file:
  pass `--trust-remote-code` to `ragvqa answer` or `ragvqa bench`.
"""


def markdown() -> str:
    """The whole reference page."""
    parts = [INTRO, "## Top level\n", _table(PipelineConfig, ())]
    for name in ("encoder", "kb", "index", "retrieval"):
        parts.append(_section((name,)))
    parts.append(_components("rerank", component_args(RERANKERS), "reranker", "##"))
    parts.append(_section(("reader",)))
    parts.append(_components("reader.generator", component_args(READERS), "generator", "###"))
    parts.append(_section(("execution",)))
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p)


def _section(key: tuple[str, ...]) -> str:
    model = model_at(PipelineConfig, key)
    if model is None:
        return ""
    level = "#" * (len(key) + 1)
    out = [f"{level} `{'.'.join(key)}`\n", _doc(model), _table(model, key)]
    for name in model.model_fields:
        out.append(_section((*key, name)))
    return "\n".join(p for p in out if p)


def _components(key: str, schemas: dict[str, type[BaseModel]], kind: str, level: str) -> str:
    names = ", ".join(f"`{n}`" for n in schemas)
    out = [f"{level} `{key}`\n", f"A {kind}: `type` (one of {names}) and that type's arguments.\n"]
    for name, schema in schemas.items():
        out += [f"{level}# `type: {name}`\n", _doc(schema), _table(schema, (key,))]
    return "\n".join(out)


def _home(model: type[BaseModel], key: tuple[str, ...] = ()) -> str | None:
    """The dotted key where the pipeline file documents `model` first."""
    here = model_at(PipelineConfig, key) if key else PipelineConfig
    if here is None:
        return None
    for name in here.model_fields:
        inner = model_at(PipelineConfig, (*key, name))
        if inner is model:
            return ".".join((*key, name))
        found = _home(model, (*key, name)) if inner is not None else None
        if found:
            return found
    return None


def _doc(model: type[BaseModel]) -> str:
    text = " ".join(line.strip() for line in (model.__doc__ or "").splitlines())
    return text.strip() + "\n" if text.strip() else ""


def _table(model: type[BaseModel], key: tuple[str, ...]) -> str:
    rows = ["| key | takes | default | what it does |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        takes = field_description(info)
        inner = model_at(model, (name,))
        if inner is not None:
            takes = takes.replace("mapping", f"mapping (`{_home(inner)}`)")
        what = _cell(info.description or "")
        rows.append(f"| `{name}` | {_cell(takes)} | {_default(info.default)} | {what} |")
    return "\n".join(rows) + "\n"


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        changed = value.model_dump(exclude_defaults=True)
        return f"`{_flow(changed)}`" if changed else "(its defaults)"
    return f"`{_flow(value)}`"


def _flow(value: Any) -> str:
    """A value as YAML flow text: null, true, 64, [], {max_tokens: 8}, "text"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value) if not value or not value.isprintable() else value
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
