"""Searching an index: passages with first-stage scores, optional one-passage-per-page.

Single-vector indexes answer with faiss directly, or, when the index is a refined `ivfpq`,
faiss proposes `refine` x k candidates that are rescored exactly against the stored fp16
vectors (memory-mapped from disk). Multi-vector (late-interaction) indexes gather candidate
documents from the nearest token vectors of every query vector, then score each candidate
exactly with MaxSim over its stored vectors.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ragvqa.errors import UserError
from ragvqa.index import faiss_index as fx
from ragvqa.index.build import FAISS_FILE, VECTORS_FILE
from ragvqa.index.manifest import (
    check_encoder,
    check_files,
    check_kb,
    read_manifest,
    summary,
)
from ragvqa.index.stored import StoredVectors
from ragvqa.kb.store import KBStore
from ragvqa.types import RetrievalResult, RetrievedPassage


def check_index(folder: Path, kb: KBStore, encoder_identity: dict | None = None) -> dict:
    """An index folder's manifest, checked without reading the faiss index: its files (sizes
    and head-tail fingerprints), its KB and (when given) its encoder. Milliseconds: the
    pipeline runs it before starting a reader's engine, so a mismatch fails at once."""
    manifest = read_manifest(folder)
    check_files(folder, manifest, hashes=False)
    check_kb(manifest, kb)
    if encoder_identity is not None:
        check_encoder(manifest, encoder_identity)
    return manifest


class PassageIndex:
    """An index folder opened for search, checked against its KB (and encoder, when given)."""

    def __init__(
        self,
        folder: str | Path,
        kb: KBStore,
        *,
        encoder_identity: dict | None = None,
        candidates_per_vector: int = 64,
        search: dict[str, Any] | None = None,
        chunk: int = 1024,
    ):
        """`search` overrides the search-time settings the index was built with (nprobe,
        refine, ef_search); the others shape the index file and need a rebuild. Queries are
        searched `chunk` at a time (a benchmark's 73K questions x 32 ReT v1 vectors x 64
        candidates would otherwise be 1.8 GB of faiss results at once)."""
        self.folder = Path(folder)
        self.chunk = chunk
        self.manifest = check_index(self.folder, kb, encoder_identity)
        self.kb = kb
        self.n_vec = int(self.manifest["vectors_per_document"])
        others = sorted(set(search or {}) - set(fx.SEARCH_TIME))
        if others:
            raise UserError(
                f"{', '.join(others)} shape the index file: rebuild the index to change them "
                f"(only {', '.join(fx.SEARCH_TIME)} change at search time)",
                path=str(self.folder),
            )
        self.params = replace(fx.FaissParams(**self.manifest["faiss"]), **(search or {}))
        index = fx.load_index(self.folder / FAISS_FILE)
        if index.ntotal != self.manifest["index_vectors"]:
            raise UserError(
                f"faiss index holds {index.ntotal} vectors, the manifest says "
                f"{self.manifest['index_vectors']}",
                path=str(self.folder),
            )
        stored = VECTORS_FILE in self.manifest["files"]
        if (
            fx.reads_vectors(self.n_vec, self.params)
            and not stored
            and not fx.refines_itself(index)
        ):
            raise UserError(
                "this index keeps no stored vectors, so it cannot refine: rebuild it with a "
                "refine setting (ragvqa index build --refine R, or index.faiss.refine)",
                path=str(self.folder),
            )
        self.index = fx.configure(index, self.params)
        self.vectors = None
        if fx.reads_vectors(self.n_vec, self.params) and stored:
            self.vectors = StoredVectors(self.folder / VECTORS_FILE)
        self.candidates_per_vector = candidates_per_vector

    def search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) [B, k] for query vectors [B, n, dim]; rows are -1 past the end."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 3 or queries.shape[-1] != self.manifest["dim"]:
            raise UserError(
                f"query vectors must be [batch, n, {self.manifest['dim']}], "
                f"got {list(queries.shape)}"
            )
        if len(queries) > self.chunk:  # bounded memory: faiss returns B x k x refine ids
            parts = [
                self.search_vectors(queries[i : i + self.chunk], k)
                for i in range(0, len(queries), self.chunk)
            ]
            return np.concatenate([s for s, _ in parts]), np.concatenate([r for _, r in parts])
        if self.n_vec == 1:
            return fx.search(
                self.index, queries[:, 0], k, refine=self.params.refine, vectors=self.vectors
            )
        return self._late_interaction(queries, k)

    def _late_interaction(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        b, n, dim = queries.shape
        _, ids = fx.search(self.index, queries.reshape(-1, dim), self.candidates_per_vector)
        ids = ids.reshape(b, -1)
        out_scores = np.full((b, k), -np.inf, dtype=np.float32)
        out_rows = np.full((b, k), -1, dtype=np.int64)
        self.vectors.prefetch(ids[ids >= 0] // self.n_vec)
        for i in range(b):
            rows = np.unique(ids[i][ids[i] >= 0] // self.n_vec)
            self.vectors.prefetch(rows)
            scores = fx.maxsim(queries[i], self.vectors[rows])  # stored: [C, m, dim]
            best = np.argsort(-scores, kind="stable")[:k]
            out_scores[i, : len(best)], out_rows[i, : len(best)] = scores[best], rows[best]
        return out_scores, out_rows

    def retrieve(
        self,
        query_ids: list[str],
        queries: np.ndarray,
        k: int,
        *,
        one_per_page: bool = False,
        overfetch: int = 4,
    ) -> list[RetrievalResult]:
        """Top-k passages per query, best first, with their first-stage scores.

        With `one_per_page`, only the best passage of each page is kept (entity-level
        results); `overfetch` x k candidates are searched to fill k distinct pages.
        """
        fetch = k * overfetch if one_per_page else k
        scores, rows = self.search_vectors(queries, fetch)
        results = []
        for qid, s_row, r_row in zip(query_ids, scores, rows, strict=True):
            keep = [(float(s), int(r)) for s, r in zip(s_row, r_row, strict=True) if r >= 0]
            passages = self.kb.passages([r for _, r in keep])
            picked, pages = [], set()
            for (score, _), passage in zip(keep, passages, strict=True):
                if one_per_page and passage.page_id in pages:
                    continue
                pages.add(passage.page_id)
                picked.append(RetrievedPassage(passage, score, len(picked)))
                if len(picked) == k:
                    break
            results.append(RetrievalResult(qid, tuple(picked)))
        return results

    def info(self) -> dict[str, Any]:
        return summary(self.manifest)
