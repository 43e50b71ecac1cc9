"""Registries of named components with lazy "module:attr" targets.

A pipeline or a command names a component by key ("vllm", "infoseek", ...); the registry maps
the key to an import path and imports it only when asked, so listing or validating names never
imports torch, vLLM or faiss. An unknown key gets a "did you mean" error. A registry with an
entry-point group also finds what other installed packages declare in that group.

A component's table entry here is its one registration: the class itself says what else there
is to know about it, its arguments' schema (`args`, a `ragvqa.schema` section model; none: its
constructor's signature) and the parts of the pipeline its constructor takes (`needs`, e.g.
`("encoder", "kb")`), so neither the schema nor the pipeline keeps a table of its own.
"""

from __future__ import annotations

import importlib
from typing import Any

from ragvqa.errors import UserError, did_you_mean


class Registry:
    """Named lazy targets of one component kind."""

    def __init__(
        self, kind: str, targets: dict[str, str] | None = None, *, group: str | None = None
    ):
        self.kind, self.group = kind, group
        self._targets: dict[str, str] = dict(targets or {})
        self._plugins: dict[str, str] | None = None  # the entry points, read on first need

    def _all(self) -> dict[str, str]:
        if self.group is None:
            return self._targets
        if self._plugins is None:
            from importlib.metadata import entry_points

            self._plugins = {ep.name: ep.value for ep in entry_points(group=self.group)}
        return {**self._plugins, **self._targets}

    def register(self, name: str, target: str) -> None:
        """Add `name` -> "package.module:attr"; re-registering a name is a programming error."""
        if name in self._targets:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if ":" not in target:
            raise ValueError(f"target {target!r} must look like 'package.module:attr'")
        self._targets[name] = target

    def names(self) -> list[str]:
        return sorted(self._all())

    def in_order(self) -> list[str]:
        """The names as registered (built-in first), for pages that list them."""
        return list(self._all()) if self.group is None else [*self._targets, *(self._plugins or {})]

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def get(self, name: str) -> Any:
        """Import and return the target registered as `name`."""
        targets = self._all()
        if name not in targets:
            hint = did_you_mean(name, targets)
            known = ", ".join(self.names())
            raise UserError(f"unknown {self.kind} {name!r} (known: {known}){hint}")
        module_name, attr = targets[name].split(":", 1)
        return getattr(importlib.import_module(module_name), attr)


BENCHMARKS = Registry(
    "benchmark",
    {
        "infoseek": "ragvqa.benchmarks.infoseek:InfoSeek",
        "evqa": "ragvqa.benchmarks.evqa:EncyclopedicVQA",
        "wn-wiki": "ragvqa.benchmarks.wn_wiki:WnWiki",
    },
    group="ragvqa.benchmarks",
)

RERANKERS = Registry(
    "reranker",
    {
        "ret_sections": "ragvqa.rerank.ret_sections:RetSectionReranker",
        "cross_encoder": "ragvqa.rerank.cross_encoder:CrossEncoderReranker",
        "entity_choice": "ragvqa.rerank.entity_choice:EntityChoiceReranker",
    },
)

# the YAML key stays `reader.generator` (users' files); the kind's errors say "generator" too
READERS = Registry(
    "generator",
    {
        "vllm": "ragvqa.readers.vllm_backend:VLLMReader",
        "openai": "ragvqa.readers.openai_backend:OpenAIReader",
        "transformers": "ragvqa.readers.hf_backend:TransformersReader",
    },
)
GENERATORS = READERS  # the old name
