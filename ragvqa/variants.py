"""What `Pipeline.variant` changes and what it may share: the variant's settings, and the
loaded parts whose settings it keeps.

A variant is the same pipeline file with other settings: `a.b=c` overrides (as `--set`), the
shorthands `prompt=` and `top_k=`, or a template object (a playground draft in no library). A
part is shared when every setting it is built from is unchanged (`BUILT_FROM`): a new template
or top_k shares the engine, the encoder and the index; a new encoder shares the reader only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, TypeVar

from ragvqa.components import COMPONENTS, Components
from ragvqa.config import Origins, merge, set_override
from ragvqa.errors import UserError, did_you_mean

# `variant`'s keywords, and the setting each stands for
SHORTHANDS = {"prompt": ("reader", "prompt"), "top_k": ("retrieval", "top_k")}
# the settings each part is built from: a variant that keeps them may share the part
BUILT_FROM: dict[str, tuple[tuple[str, ...], ...]] = {
    "encoder": (("encoder",),),
    "kb": (("kb",),),
    "index": (("index",), ("kb",), ("encoder",)),
    "reader": (("reader", "generator"),),
    "reranker": (("rerank",), ("encoder",), ("kb",), ("reader", "generator")),
    "prompts": (),
    "template": (("reader", "prompt"),),
}


P = TypeVar("P", bound=Components)


def make_variant(
    pipe: P,
    overrides: tuple[str, ...],
    template: Any,
    settings: Mapping[str, Any],
    share_lock: bool = True,
) -> P:
    """`pipe.variant(*overrides, template=template, **settings)` (`ragvqa.pipeline.Pipeline`):
    a pipeline of the same class, sharing the kept parts, the start-up log and (`share_lock`)
    the call lock and closing."""
    ref = None if template is None else template.ref
    config, origins = variant_config(pipe.config, pipe._origins, overrides, settings, ref)
    if hasattr(pipe, "_reader_start"):
        _ = pipe.reader  # a reader starting in the background: shared once started
    kept = kept_parts(pipe.config, config)
    shared = {p: getattr(pipe, p) for p in COMPONENTS if p in kept and pipe.loaded(p)}
    if template is not None:
        shared["template"] = template
    other = type(pipe)(
        config,
        pipe.folder,
        name=pipe.name,
        components=shared,
        origins=origins,
        trust_remote_code=pipe._trust_remote_code,
    )
    other.startup = pipe.startup
    if share_lock:
        other._turns = pipe._turns  # type: ignore[attr-defined]
        pipe._turns.members.add(other)  # type: ignore[attr-defined]
    return other


def variant_config(
    config: Mapping[str, Any],
    origins: Origins | None,
    overrides: tuple[str, ...],
    settings: Mapping[str, Any],
    template_ref: str | None,
) -> tuple[dict[str, Any], Origins]:
    """(the variant's config, where each key was set): `config` with the overrides, the
    shorthand settings and the template's ref applied. An unknown shorthand is one line."""
    changed, where = copy.deepcopy(dict(config)), dict(origins or {})
    for override in overrides:
        set_override(changed, override, where)
    for key, value in settings.items():
        if key not in SHORTHANDS:
            hint = did_you_mean(key, SHORTHANDS)
            raise UserError(f"unknown variant setting {key!r}{hint} (known: prompt, top_k)")
        section, name = SHORTHANDS[key]
        changed = merge(changed, {section: {name: value}})
    if template_ref is not None:
        changed = merge(changed, {"reader": {"prompt": template_ref}})
    return changed, where


def kept_parts(old: Mapping[str, Any], new: Mapping[str, Any]) -> set[str]:
    """The parts whose settings are the same in both configs (those a variant may share)."""
    return {
        part
        for part, keys in BUILT_FROM.items()
        if all(_at(old, key) == _at(new, key) for key in keys)
    }


def _at(config: Any, key: tuple[str, ...]) -> Any:
    """The value at a dotted `key` of a config mapping (None where missing)."""
    for part in key:
        config = config.get(part) if isinstance(config, Mapping) else None
    return config
