"""The passage store: Arrow shards on disk, memory-mapped through `datasets`.

Layout of a KB folder:
    kb.json                     what was built from what, counts, fingerprint (when complete)
    build_state.json            progress of a build (entries consumed, shards written)
    passages/shard-00000.arrow  Arrow IPC stream files, one per committed batch of pages
A shard is written under a temporary name and renamed when complete, and the build state is
updated after it, so a build killed at any moment resumes from the last committed shard and
never duplicates or loses a passage. Row numbers are global across shards: they are the ids
the vector index stores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import atomic_path, sha256_file
from ragvqa.types import Passage

MANIFEST = "kb.json"
STATE = "build_state.json"
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
        try:
            self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            self.manifest = None
        if not isinstance(self.manifest, dict) or not {"shards", "passages"} <= set(self.manifest):
            raise UserError("kb.json is not a ragvqa KB manifest", path=str(manifest))
        self._table: Any = None
        self._ids: dict[str, int] | None = None
        self._entities: dict[str, str] | None = None

    @property
    def table(self) -> Any:
        """The passages as one memory-mapped `datasets.Dataset` (opened on first use)."""
        if self._table is None:
            from datasets import Dataset, concatenate_datasets

            parts = []
            for shard in self.manifest["shards"]:
                path = self.folder / "passages" / shard["file"]
                if not path.is_file():
                    raise UserError("KB shard is missing", path=str(path))
                parts.append(Dataset.from_file(str(path)))
            self._table = concatenate_datasets(parts) if parts else None
            if self._table is not None and len(self._table) != self.manifest["passages"]:
                raise UserError(
                    f"KB has {len(self._table)} passages, kb.json says {self.manifest['passages']}",
                    path=str(self.folder),
                )
        return self._table

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
        batch = self.table[list(rows)]
        return [self._passage({k: batch[k][i] for k in batch}) for i in range(len(rows))]

    def passage(self, row: int) -> Passage:
        return self.passages([row])[0]

    def row_of(self, passage_id: str) -> int:
        """Row number of a passage id (the id map is built on first use: ~100 B per passage)."""
        if self._ids is None:
            self._ids = {pid: i for i, pid in enumerate(self.table["passage_id"])}
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
        ids = self.table[start:end]["page_id"]
        count = next((i for i, p in enumerate(ids) if p != page_id), len(ids))
        return self.passages(range(start, start + count))

    def page_of_entity(self, entity_id: str) -> str | None:
        """The page of an entity id (e.g. a Wikidata QID), if the KB records entity ids (the
        map is built on first use from the entity_id column)."""
        if self._entities is None:
            self._entities = {}
            for entity, page in zip(self.table["entity_id"], self.table["page_id"], strict=True):
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
            "image_urls",
            "format",
            "input",
            "chunking",
            "max_tokens",
            "fingerprint",
            "skipped_examples",
        )
        return {k: self.manifest.get(k) for k in keys}
