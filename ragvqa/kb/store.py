"""The passage store: Arrow shards on disk, memory-mapped through `datasets`.

Layout of a KB folder:
    kb.json                     what was built from what, counts, fingerprint (when complete)
    build_state.json            progress of a build (entries consumed, shards written)
    passages/shard-00000.arrow  Arrow IPC stream files, one per committed batch of pages
A shard is written under a temporary name and renamed when complete, and the build state is
updated after it, so a build killed at any moment resumes from the last committed shard and
never duplicates or loses a passage. Row numbers are global across shards: they are the ids
the vector index stores.

Opening a store reads kb.json only. Passages are read from the shards that hold them, each
memory-mapped with pyarrow when first needed (kb.json records every shard's passage count), so
answering one question opens one or a few shards and never imports `datasets`; `table` (all
shards as one `datasets.Dataset`) is for whole-KB work.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import atomic_path, read_json, sha256_file
from ragvqa.types import Passage

MANIFEST = "kb.json"
STATE = "build_state.json"
MAX_MANIFEST_BYTES = 64 << 20  # a manifest lists shards: a larger kb.json is a KB's input file
FIELDS = ("passage_id", "page_id", "entity_id", "title", "section_title", "text")


def arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            *(pa.field(f, pa.string()) for f in FIELDS),
            pa.field("image_paths", pa.list_(pa.string())),
        ]
    )


def write_shard(folder: Path, index: int, passages: Sequence[Passage]) -> tuple[str, str]:
    """Write one shard atomically; returns (file name, sha256 of its bytes)."""
    import pyarrow as pa

    name = f"shard-{index:05d}.arrow"
    columns = {f: [getattr(p, f) for p in passages] for f in FIELDS}
    columns["image_paths"] = [list(p.image_paths) for p in passages]
    table = pa.table(columns, schema=arrow_schema())
    with atomic_path(folder / name, fixed=True) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=2048)
        digest = sha256_file(tmp)
    return name, digest


def fingerprint(shards: Sequence[dict[str, Any]], params: dict[str, Any]) -> str:
    """Identity of a KB's content: the shard digests, in order, and the build parameters."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for shard in shards:
        h.update(shard["sha256"].encode())
    return h.hexdigest()[:32]


def read_manifest(path: Path) -> dict[str, Any]:
    """A kb.json, checked to be a ragvqa KB manifest (an E-VQA KB file is also named kb.json:
    a large one is refused before it is read)."""
    invalid = "kb.json is not a ragvqa KB manifest"
    manifest = read_json(
        path, what="kb.json", expect=dict, invalid=invalid, max_bytes=MAX_MANIFEST_BYTES
    )
    if not {"shards", "passages", "fingerprint"} <= set(manifest) or not isinstance(
        manifest["shards"], list
    ):
        raise UserError(invalid, path=str(path))
    return manifest


def shard_page_ids(folder: Path, shards: Sequence[dict[str, Any]]) -> Iterator[str]:
    """The page id of every passage of the given shards, in order (a resumed build learns
    which pages it has already written)."""
    import pyarrow as pa

    for shard in shards:
        path = folder / shard["file"]
        if not path.is_file():
            raise UserError("KB shard is missing", path=str(path))
        try:
            with pa.memory_map(str(path)) as source:
                column = pa.ipc.open_stream(source).read_all().column("page_id")
        except (pa.ArrowException, KeyError) as exc:
            raise UserError(f"KB shard is unreadable ({exc})", path=str(path)) from None
        yield from column.to_pylist()


class KBStore:
    """A built KB: random access to passages by row number or passage id."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            building = (self.folder / STATE).is_file()
            problem = (
                "KB build not finished (run kb build again to resume)"
                if building
                else ("not a KB folder (no kb.json)")
            )
            raise UserError(problem, path=str(self.folder))
        self.manifest = read_manifest(manifest)
        self._table: Any = None
        self._shards: dict[int, Any] = {}  # shard number -> its pyarrow table, once opened
        counts = [shard.get("passages") for shard in self.manifest["shards"]]
        self._starts: list[int] | None = None  # first row of each shard (None: not recorded)
        if all(isinstance(c, int) for c in counts) and sum(counts) == len(self):
            self._starts = [0, *itertools.accumulate(counts)][:-1]
        self._ids: dict[str, int] | None = None
        self._entities: dict[str, str] | None = None

    @property
    def table(self) -> Any:
        """The passages as one memory-mapped `datasets.Dataset` (opened on first use)."""
        if self._table is None:
            from datasets import Dataset, concatenate_datasets

            parts = [Dataset.from_file(str(self._shard_path(s))) for s in self.manifest["shards"]]
            self._table = concatenate_datasets(parts) if parts else None
            if self._table is not None and len(self._table) != self.manifest["passages"]:
                raise UserError(
                    f"KB has {len(self._table)} passages, kb.json says {self.manifest['passages']}",
                    path=str(self.folder),
                )
        return self._table

    def _shard_path(self, shard: dict[str, Any]) -> Path:
        """A shard's file, checked to exist with the size kb.json records."""
        path = self.folder / "passages" / shard["file"]
        if not path.is_file():
            raise UserError("KB shard is missing", path=str(path))
        size, recorded = path.stat().st_size, shard.get("bytes")  # older KBs lack it
        if recorded is not None and size != recorded:
            raise UserError(
                f"KB shard has {size} bytes, kb.json says {recorded} (truncated or replaced)",
                path=str(path),
            )
        return path

    def _shard(self, number: int) -> Any:
        """Shard `number` as a pyarrow table, memory-mapped on first use."""
        if number not in self._shards:
            import pyarrow as pa

            shard = self.manifest["shards"][number]
            path = self._shard_path(shard)
            try:  # the table's buffers point into the mapping, which stays open with them
                table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
            except pa.ArrowException as exc:
                raise UserError(f"KB shard is unreadable ({exc})", path=str(path)) from None
            if table.num_rows != shard["passages"]:
                raise UserError(
                    f"KB shard has {table.num_rows} passages, kb.json says {shard['passages']}",
                    path=str(path),
                )
            self._shards[number] = table
        return self._shards[number]

    def _columns(self, rows: Sequence[int], columns: Sequence[str]) -> dict[str, list[Any]]:
        """The `columns` at `rows` (any order, repeats allowed), read from the shards that hold
        those rows only."""
        if self._starts is None:  # an older kb.json: no per-shard counts
            batch = self.table[list(rows)]
            return {c: batch[c] for c in columns}
        import pyarrow as pa

        by_shard: dict[int, list[tuple[int, int]]] = {}  # shard -> (position, row in shard)
        for i, row in enumerate(rows):
            if not 0 <= row < len(self):
                raise IndexError(f"row {row} is not in the KB ({len(self)} passages)")
            number = bisect.bisect_right(self._starts, row) - 1
            by_shard.setdefault(number, []).append((i, row - self._starts[number]))
        out: dict[str, list[Any]] = {c: [None] * len(rows) for c in columns}
        for number, wanted in by_shard.items():
            local = pa.array([r for _, r in wanted], type=pa.int64())
            part = self._shard(number).select(list(columns)).take(local).to_pydict()
            for c in columns:
                for (i, _), value in zip(wanted, part[c], strict=True):
                    out[c][i] = value
        return out

    def _column(self, column: str) -> list[Any]:
        """A whole column, in row order."""
        return self._columns(range(len(self)), [column])[column]

    def __len__(self) -> int:
        return int(self.manifest["passages"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @staticmethod
    def _passage(row: dict[str, Any]) -> Passage:
        return Passage(**{f: row[f] for f in FIELDS}, image_paths=tuple(row["image_paths"] or ()))

    def passages(self, rows: Sequence[int]) -> list[Passage]:
        """Passages at the given row numbers (any order, repeats allowed)."""
        if not rows:
            return []
        batch = self._columns(rows, (*FIELDS, "image_paths"))
        return [self._passage({k: batch[k][i] for k in batch}) for i in range(len(rows))]

    def passage(self, row: int) -> Passage:
        return self.passages([row])[0]

    def row_of(self, passage_id: str) -> int:
        """Row number of a passage id (the id map is built on first use: ~100 B per passage)."""
        if self._ids is None:
            self._ids = {pid: i for i, pid in enumerate(self._column("passage_id"))}
        if passage_id not in self._ids:
            raise UserError(f"unknown passage id {passage_id!r}", path=str(self.folder))
        return self._ids[passage_id]

    def page_passages(self, page_id: str, limit: int = 1000) -> list[Passage]:
        """All passages of a page (its rows are consecutive; ids "<page id>#<n>")."""
        try:
            start = self.row_of(f"{page_id}#0")
        except UserError:
            return []
        end = min(start + limit, len(self))
        ids = self._columns(range(start, end), ["page_id"])["page_id"]
        count = next((i for i, p in enumerate(ids) if p != page_id), len(ids))
        return self.passages(range(start, start + count))

    def page_of_entity(self, entity_id: str) -> str | None:
        """The page of an entity id (e.g. a Wikidata QID), if the KB records entity ids (the
        map is built on first use from the entity_id column)."""
        if self._entities is None:
            self._entities = {}
            pages = self._column("page_id")
            for entity, page in zip(self._column("entity_id"), pages, strict=True):
                if entity:
                    self._entities.setdefault(entity, page)
        return self._entities.get(entity_id)

    def iter_passages(self, batch_size: int = 1024) -> Iterator[tuple[int, list[Passage]]]:
        """(first row, passages) batches in row order."""
        for start in range(0, len(self), batch_size):
            yield start, self.passages(range(start, min(start + batch_size, len(self))))

    def info(self) -> dict[str, Any]:
        keys = (
            "pages",
            "passages",
            "images",
            "missing_images",
            "skipped_entries",
            "duplicate_pages",
            "image_urls",
            "format",
            "input",
            "chunking",
            "max_tokens",
            "fingerprint",
            "skipped_examples",
        )
        return {k: self.manifest.get(k) for k in keys}
