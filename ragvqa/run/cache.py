"""The stage cache: retrieval-stage outputs stored under keys of everything they depend on.

`Pipeline.retrieve_batch` computes the keys (`ragvqa.cached_stages`: encoder identity and
dtype, question texts and each image's sha256, index files, top-k, the reranker's settings and
its model's fingerprint) and asks the cache first, so a second run that changes only the prompt
re-runs only rendering and generation, and one whose questions, images or models changed
computes them again. Files live under
`<root>/stages/<stage>-<key>.*` and are written atomically; a cache entry that cannot be read
(a truncated or half-written file, a line naming a passage the KB lacks) is computed again
and written anew: a damaged cache never stops a run.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import atomic_path, iter_jsonl, write_jsonl
from ragvqa.types import RetrievalResult, RetrievedPassage


class StageCache:
    """Stage outputs under `<root>/stages/`; `enabled=False` reads nothing (writes still go)."""

    def __init__(self, root: Path, enabled: bool = True):
        self.dir, self.enabled = Path(root) / "stages", enabled

    def path(self, stage: str, key: str, suffix: str) -> Path:
        return self.dir / f"{stage}-{key}{suffix}"

    def load_vectors(self, key: str) -> tuple[Any, Any] | None:
        """(query vectors, image-present flags) of an encode stage, or None."""
        import numpy as np

        path = self.path("encode", key, ".npz")
        if not (self.enabled and path.is_file()):
            return None
        try:
            data = np.load(path)  # never pickles (allow_pickle is off)
            if not isinstance(data, np.lib.npyio.NpzFile):
                return None  # a lone .npy array in its place
            with data:
                vectors, present = data["vectors"], data["present"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # a damaged (truncated, half-written) entry is computed again
        return (vectors, present) if len(vectors) == len(present) else None

    def save_vectors(self, key: str, vectors: Any, present: Any) -> None:
        import numpy as np

        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path("encode", key, ".npz")) as tmp, tmp.open("xb") as fh:
            np.savez(fh, vectors=vectors, present=present)  # a file object: no suffix added

    def load_results(self, stage: str, key: str, kb: Any) -> list[RetrievalResult] | None:
        """The ranked passages of a search or rerank stage (passages read back from `kb`)."""
        path = self.path(stage, key, ".jsonl")
        if not (self.enabled and path.is_file()):
            return None
        try:
            return [_result(obj, kb) for _, obj in iter_jsonl(path)]
        except (UserError, KeyError, TypeError, ValueError):
            return None  # a damaged entry (or one naming passages the KB lacks) is computed again

    def save_results(self, stage: str, key: str, results: Sequence[RetrievalResult]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        rows = (
            {
                "query_id": r.query_id,
                "passages": [[rp.passage.passage_id, rp.score] for rp in r.passages],
            }
            for r in results
        )
        write_jsonl(self.path(stage, key, ".jsonl"), rows)


def _result(obj: dict[str, Any], kb: Any) -> RetrievalResult:
    """One cached line back as ranked passages (their texts read from `kb`)."""
    pairs = obj["passages"]
    passages = kb.passages([kb.row_of(pid) for pid, _ in pairs])
    ranked = tuple(
        RetrievedPassage(p, float(s), i)
        for i, (p, (_, s)) in enumerate(zip(passages, pairs, strict=True))
    )
    return RetrievalResult(obj["query_id"], ranked)
