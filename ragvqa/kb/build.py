"""`ragvqa kb build`: stream a knowledge base into the passage store, resumably.

Entries are read in order; every `shard_pages` entries the passages gathered so far are written
as one shard and the build state is saved. Killed at any moment, the same command skips the
entries of committed shards and goes on: no passage is lost or written twice. Malformed
entries are skipped and counted with their ids (the first few are kept).

A page id given twice (the same Wikipedia URL twice in a KB file) is kept once: the first
entry is built, later ones are skipped and counted as `duplicate_pages`, so passage ids stay
unique. Refusing instead would make a multi-GB file unbuildable over one repeated entry, and
the first copy is what a resumed build has already written. An input from which no page at
all is read (a wrong `--format`, an empty file) is an error, not an empty KB: the build stops
at the first shard's worth of entries and removes the files it made.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import read_json, write_json
from ragvqa.kb.chunking import chunk_page
from ragvqa.kb.dedup import SeenIds
from ragvqa.kb.images import ImageResolver
from ragvqa.kb.readers import Entry, KBPage, reader
from ragvqa.kb.store import (
    MANIFEST,
    STATE,
    fingerprint,
    read_manifest,
    shard_page_ids,
    write_shard,
)
from ragvqa.progress import ProgressBar
from ragvqa.schema.base import defaults
from ragvqa.schema.sections import KBSource

SHOW = 5
_DEFAULT = defaults(KBSource)  # the `kb.source` section's
COUNTS = (
    "entries",
    "pages",
    "passages",
    "skipped_entries",
    "duplicate_pages",
    "image_urls",
    "images",
    "missing_images",
)


@dataclass(frozen=True)
class BuildParams:
    """What a KB is built from (the `kb.source` section's settings, with its defaults); a
    folder holds one build, so a resume must match these."""

    format: str
    input: str
    chunking: str = _DEFAULT["chunking"]
    max_tokens: int = _DEFAULT["max_tokens"]
    subset: str = _DEFAULT["subset"]
    split: str = _DEFAULT["split"]
    images_dir: str = _DEFAULT["images_dir"]
    images_map: str = _DEFAULT["images_map"]
    shard_pages: int = _DEFAULT["shard_pages"]


def _fresh_state(params: BuildParams) -> dict[str, Any]:
    return {
        "params": asdict(params),
        **{c: 0 for c in COUNTS},
        "skipped_examples": [],
        "shards": [],
    }


def _load_state(out: Path, params: BuildParams) -> dict[str, Any]:
    path = out / STATE
    invalid = "not a ragvqa KB build state; use a new --out folder"
    state = read_json(path, what=STATE, missing=None, expect=dict, invalid=invalid)
    if state is None:
        return _fresh_state(params)
    if not isinstance(state.get("shards"), list):
        raise UserError(invalid, path=str(path))
    if state.get("params") != asdict(params):
        raise UserError(
            "this folder holds a build of another input or with other settings; "
            "use a new --out folder",
            path=str(out),
        )
    return state


def _finished(out: Path, params: BuildParams) -> dict[str, Any] | None:
    """The manifest of a finished build of `params` in `out` (None when there is none).
    Refuses a folder whose kb.json is the input itself, is not a KB manifest, or is a KB of
    another input or other settings: the build would replace it."""
    path = out / MANIFEST
    if not path.is_file():
        return None
    if Path(params.input).is_file() and path.samefile(params.input):
        raise UserError(
            f"the input is this folder's {MANIFEST}, which a build writes; use another --out",
            path=str(out),
        )
    try:
        manifest = read_manifest(path)
    except UserError:
        raise UserError(
            f"the folder holds a {MANIFEST} that is not a ragvqa KB manifest; use another --out",
            path=str(out),
        ) from None
    if manifest.get("fingerprint") != fingerprint(manifest["shards"], asdict(params)):
        raise UserError(
            "this folder holds a KB built from another input or with other settings; "
            "use a new --out folder",
            path=str(out),
        )
    return manifest


class _Pending:
    """Passages and counts since the last committed shard."""

    def __init__(self) -> None:
        self.passages: list = []
        self.counts = dict.fromkeys(COUNTS, 0)
        self.skipped: list[dict[str, str]] = []

    def skip(self, entry_id: str, reason: str) -> None:
        self.counts["skipped_entries"] += 1
        if len(self.skipped) < SHOW:
            self.skipped.append({"id": entry_id, "reason": reason})


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_passages(params: BuildParams, state: dict[str, Any], pending: _Pending) -> UserError:
    entries = state["entries"] + pending.counts["entries"]
    skipped = state["skipped_examples"] + pending.skipped
    if not entries:
        detail = "it holds no entries"
    else:
        detail = f"{entries:,} entries read, none gives a passage"
        if skipped:
            detail += f" (first skipped: {_short(skipped[0]['id'])}: {skipped[0]['reason']})"
    return UserError(
        f"no passages read as --format {params.format}: {detail}; is the format right?",
        path=params.input,
    )


def _commit(out: Path, state: dict[str, Any], pending: _Pending, params: BuildParams) -> None:
    if state["passages"] + pending.counts["passages"] == 0:
        raise _no_passages(params, state, pending)
    if pending.passages:
        name, digest = write_shard(out / "passages", len(state["shards"]), pending.passages)
        size = (out / "passages" / name).stat().st_size
        state["shards"].append(
            {"file": name, "sha256": digest, "passages": len(pending.passages), "bytes": size}
        )
    for key in COUNTS:
        state[key] = state.get(key, 0) + pending.counts[key]  # older states lack new counts
    room = SHOW - len(state["skipped_examples"])
    state["skipped_examples"] += pending.skipped[: max(room, 0)]
    write_json(out / STATE, state)


def _missing_dirs(out: Path) -> list[Path]:
    """`out/passages` and the folders above it that do not exist yet, deepest first."""
    missing, folder = [], out / "passages"
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def build_kb(params: BuildParams, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Build (or resume building) a KB into `out`; returns its manifest. A failed build that
    committed nothing leaves no folder behind."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError("--out is a file, not a folder", path=str(out))
    finished = _finished(out, params)
    if finished is not None:
        _load_state(out, params)  # a finished folder still refuses other settings
        return finished
    entries, probe = reader(params.format, params.input, subset=params.subset, split=params.split)
    made = _missing_dirs(out)
    (out / "passages").mkdir(parents=True, exist_ok=True)
    try:
        return _build(params, out, entries, probe, progress)
    except UserError:
        for folder in made:  # only the empty folders this run created
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _build(
    params: BuildParams,
    out: Path,
    entries: Iterator[Entry],
    probe: Callable[[], tuple[int, int]],
    progress: bool,
) -> dict[str, Any]:
    state = _load_state(out, params)
    seen = SeenIds(shard_page_ids(out / "passages", state["shards"]))
    resolver = ImageResolver(params.images_dir or None, params.images_map or None)
    pending = _Pending()
    total = (probe()[1] or None) if progress else None  # bytes of the input, when known
    with ProgressBar("kb build", total, enabled=progress, transfer=True) as bar:
        bar.update(info=f"{state['pages']:,} pages")
        for entry in itertools.islice(entries, state["entries"], None):
            pending.counts["entries"] += 1
            if isinstance(entry, KBPage) and not seen.add(entry.page_id):
                number = state["entries"] + pending.counts["entries"]
                pending.counts["duplicate_pages"] += 1
                pending.skip(entry.page_id, f"duplicate page id, first kept (entry {number:,})")
            elif isinstance(entry, KBPage):
                _add_page(entry, params, resolver, pending)
            else:
                pending.skip(entry.entry_id, entry.reason)
            if pending.counts["entries"] >= params.shard_pages:
                _commit(out, state, pending, params)
                pending = _Pending()
            pages = state["pages"] + pending.counts["pages"]
            if bar.shown and pages % 100 == 0:
                bar.update(completed=probe()[0], info=f"{pages:,} pages")
    _commit(out, state, pending, params)
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


def _add_page(
    page: KBPage, params: BuildParams, resolver: ImageResolver, pending: _Pending
) -> None:
    """Chunk one page into the pending passages and count it."""
    before = (resolver.urls, resolver.found, resolver.missing)
    passages = list(chunk_page(page, params.chunking, params.max_tokens, resolver))
    pending.passages += passages
    pending.counts["pages"] += 1
    pending.counts["passages"] += len(passages)
    pending.counts["image_urls"] += resolver.urls - before[0]
    pending.counts["images"] += resolver.found - before[1]
    pending.counts["missing_images"] += resolver.missing - before[2]
