"""`ragvqa kb build`: stream a knowledge base into the passage store, resumably.

Entries are read in order; every `shard_pages` entries the passages gathered so far are written
as one shard and the build state is saved. Killed at any moment, the same command skips the
entries of committed shards and goes on: no passage is lost or written twice. Malformed
entries are skipped and counted with their ids (the first few are kept).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import write_json
from ragvqa.kb.chunking import chunk_page
from ragvqa.kb.images import ImageResolver
from ragvqa.kb.readers import KBPage, reader
from ragvqa.kb.store import MANIFEST, STATE, fingerprint, write_shard
from ragvqa.progress import ProgressBar

SHOW = 5
COUNTS = (
    "entries",
    "pages",
    "passages",
    "skipped_entries",
    "image_urls",
    "images",
    "missing_images",
)


@dataclass(frozen=True)
class BuildParams:
    """What a KB is built from; a folder holds one build, so a resume must match these."""

    format: str
    input: str
    chunking: str = "section"
    max_tokens: int = 128
    subset: str = ""
    split: str = ""
    images_dir: str = ""
    images_map: str = ""
    shard_pages: int = 2000


def _fresh_state(params: BuildParams) -> dict[str, Any]:
    return {
        "params": asdict(params),
        **{c: 0 for c in COUNTS},
        "skipped_examples": [],
        "shards": [],
    }


def _load_state(out: Path, params: BuildParams) -> dict[str, Any]:
    path = out / STATE
    if not path.is_file():
        return _fresh_state(params)
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("params") != asdict(params):
        raise UserError(
            "this folder holds a build of another input or with other settings; "
            "use a new --out folder",
            path=str(out),
        )
    return state


class _Pending:
    """Passages and counts since the last committed shard."""

    def __init__(self) -> None:
        self.passages: list = []
        self.counts = dict.fromkeys(COUNTS, 0)
        self.skipped: list[dict[str, str]] = []


def _commit(out: Path, state: dict[str, Any], pending: _Pending) -> None:
    if pending.passages:
        name, digest = write_shard(out / "passages", len(state["shards"]), pending.passages)
        state["shards"].append({"file": name, "sha256": digest, "passages": len(pending.passages)})
    for key in COUNTS:
        state[key] += pending.counts[key]
    room = SHOW - len(state["skipped_examples"])
    state["skipped_examples"] += pending.skipped[: max(room, 0)]
    write_json(out / STATE, state)


def build_kb(params: BuildParams, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Build (or resume building) a KB into `out`; returns its manifest."""
    out = Path(out)
    (out / "passages").mkdir(parents=True, exist_ok=True)
    state = _load_state(out, params)
    if (out / MANIFEST).is_file():
        return json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    entries, probe = reader(params.format, params.input, subset=params.subset, split=params.split)
    resolver = ImageResolver(params.images_dir or None, params.images_map or None)
    pending = _Pending()
    total = (probe()[1] or None) if progress else None  # bytes of the input, when known
    with ProgressBar("kb build", total, enabled=progress, transfer=True) as bar:
        bar.update(info=f"{state['pages']:,} pages")
        for entry in itertools.islice(entries, state["entries"], None):
            pending.counts["entries"] += 1
            if isinstance(entry, KBPage):
                before = (resolver.urls, resolver.found, resolver.missing)
                passages = list(chunk_page(entry, params.chunking, params.max_tokens, resolver))
                pending.passages += passages
                pending.counts["pages"] += 1
                pending.counts["passages"] += len(passages)
                pending.counts["image_urls"] += resolver.urls - before[0]
                pending.counts["images"] += resolver.found - before[1]
                pending.counts["missing_images"] += resolver.missing - before[2]
            else:
                pending.counts["skipped_entries"] += 1
                if len(pending.skipped) < SHOW:
                    pending.skipped.append({"id": entry.entry_id, "reason": entry.reason})
            if pending.counts["entries"] >= params.shard_pages:
                _commit(out, state, pending)
                pending = _Pending()
            pages = state["pages"] + pending.counts["pages"]
            if bar.shown and pages % 100 == 0:
                bar.update(completed=probe()[0], info=f"{pages:,} pages")
    _commit(out, state, pending)
    manifest = {
        **{k: state[k] for k in COUNTS if k != "entries"},
        "format": params.format,
        "input": params.input,
        "chunking": params.chunking,
        "max_tokens": params.max_tokens if params.chunking == "tokens" else None,
        "skipped_examples": state["skipped_examples"],
        "shards": state["shards"],
        "fingerprint": fingerprint(state["shards"], asdict(params)),
    }
    write_json(out / MANIFEST, manifest)
    return manifest
