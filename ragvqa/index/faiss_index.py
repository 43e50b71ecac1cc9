"""The faiss adapter: building, saving, loading and searching inner-product indexes.

Kinds:
- `flat`: exact inner product (IndexFlatIP): the reference, and right up to a few million
  vectors of dim 128.
- `ivfpq`: inverted lists + product quantisation (`m` bytes per vector in memory), optionally
  refined: the best `refine` x k candidates are rescored exactly against stored vectors, which
  an index folder keeps on disk (fp16, memory-mapped), so memory stays at the code size while
  the ranking is nearly exact.
- `hnsw`: a graph over full vectors (fast, accurate, 4 x dim + graph bytes per vector).
On a machine with faiss-gpu and a GPU, flat and IVF indexes are built and searched on the GPU.
faiss is imported here only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragvqa.errors import UserError, first_line
from ragvqa.io import atomic_path
from ragvqa.schema.base import defaults
from ragvqa.schema.sections import INDEX_KINDS as KINDS
from ragvqa.schema.sections import FaissSection

_DEFAULT = defaults(FaissSection)  # the `index.faiss` section's
# settings that take effect when searching: changing them needs no rebuild
SEARCH_TIME = ("nprobe", "refine", "ef_search")
GPU_MAX_K = 2048


@dataclass(frozen=True)
class FaissParams:
    """Index settings (the `index.faiss` section's, with its defaults); zeros mean "choose
    from the vector count"."""

    kind: str = _DEFAULT["kind"]
    nlist: int = _DEFAULT["nlist"]
    m: int = _DEFAULT["m"]
    nbits: int = _DEFAULT["nbits"]
    nprobe: int = _DEFAULT["nprobe"]
    refine: int = _DEFAULT["refine"]
    hnsw_m: int = _DEFAULT["hnsw_m"]
    ef_construction: int = _DEFAULT["ef_construction"]
    ef_search: int = _DEFAULT["ef_search"]

    def build_time(self) -> dict[str, Any]:
        """The settings that shape the index file (everything but `SEARCH_TIME`)."""
        return {k: v for k, v in asdict(self).items() if k not in SEARCH_TIME}

    def resolved(self, count: int, dim: int) -> FaissParams:
        if self.kind not in KINDS:
            raise UserError(f"unknown index kind {self.kind!r} (flat, ivfpq or hnsw)")
        nlist = self.nlist or max(1, min(65536, int(4 * math.sqrt(max(count, 1)))))
        m = self.m or max(d for d in range(1, min(64, dim) + 1) if dim % d == 0)
        if dim % m:
            raise UserError(f"PQ m={m} must divide the dimension {dim}")
        return FaissParams(**{**asdict(self), "nlist": nlist, "m": m})


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise UserError("faiss is not installed: pip install 'ragvqa[cpu]' (or [gpu])") from None
    return faiss


def _gpu(faiss: Any) -> Any:
    """GPU resources when faiss-gpu sees a GPU, else None."""
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return faiss.StandardGpuResources()
    return None


def reads_vectors(n_vec: int, params: FaissParams) -> bool:
    """Whether search reads the stored vectors: late interaction (several vectors per
    document), or a refined ivfpq index."""
    return n_vec > 1 or (params.kind == "ivfpq" and params.refine > 0)


def new_index(params: FaissParams, dim: int) -> Any:
    """An empty index of the resolved kind (IVF kinds still need `train`)."""
    faiss = _faiss()
    metric = faiss.METRIC_INNER_PRODUCT
    if params.kind == "flat":
        return faiss.IndexFlatIP(dim)
    if params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, metric)
        index.hnsw.efConstruction = params.ef_construction
        return index
    quantizer = faiss.IndexFlatIP(dim)
    return faiss.IndexIVFPQ(quantizer, dim, params.nlist, params.m, params.nbits, metric)


def train_sample_size(params: FaissParams) -> int:
    """How many vectors IVF training wants (0 for kinds without training)."""
    return 256 * params.nlist if params.kind == "ivfpq" else 0


def train(index: Any, sample: np.ndarray, params: FaissParams) -> None:
    if params.kind != "ivfpq":
        return
    need = max(params.nlist, 2**params.nbits)  # one per list, and per PQ centroid
    if len(sample) < need:
        raise UserError(
            f"ivfpq with nlist={params.nlist} and nbits={params.nbits} needs at least {need} "
            f"vectors to train, got {len(sample)} (use --type flat for so few, or lower them)"
        )
    index.train(np.ascontiguousarray(sample, dtype=np.float32))


def add(index: Any, vectors: np.ndarray) -> None:
    """Append vectors (their ids continue from the index's current size)."""
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))


def build_index(vectors: np.ndarray, params: FaissParams) -> tuple[Any, FaissParams]:
    """An index over float32 `vectors` [N, dim] in one go (ids = row positions)."""
    count, dim = vectors.shape
    p = params.resolved(count, dim)
    index = new_index(p, dim)
    sample = vectors
    if count > train_sample_size(p) > 0:
        rng = np.random.default_rng(0)
        sample = vectors[np.sort(rng.choice(count, train_sample_size(p), replace=False))]
    train(index, sample, p)
    add(index, vectors)
    return index, p


def configure(index: Any, params: FaissParams) -> Any:
    """Apply search-time settings (nprobe, efSearch); GPU when available.

    (Indexes written before refinement moved to stored vectors wrap the IVF index in faiss's
    IndexRefineFlat, which holds float32 copies in memory; they still load, and their
    `refine` factor is applied here.)
    """
    faiss = _faiss()
    base = faiss.downcast_index(index.base_index) if hasattr(index, "base_index") else index
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(max(params.refine, 1))
    if hasattr(base, "nprobe"):
        base.nprobe = params.nprobe
    if hasattr(base, "hnsw"):
        base.hnsw.efSearch = params.ef_search
    resources = _gpu(faiss)
    if resources is not None and params.kind != "hnsw":
        index = faiss.index_cpu_to_gpu(resources, 0, index)
    return index


def refines_itself(index: Any) -> bool:
    """Whether the index is faiss's IndexRefine wrapper (written before refinement moved to
    stored vectors), which keeps its own float32 copies."""
    return isinstance(index, _faiss().IndexRefine)


def save_index(index: Any, path: Path) -> None:
    faiss = _faiss()
    with atomic_path(path, fixed=True) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(path: Path) -> Any:
    """The faiss index file, memory-mapped where faiss can (`IO_FLAG_MMAP_IFC`: the codes of a
    flat index and an HNSW's vectors are read in place, not copied), so the processes of one
    machine (the Ray executor's replicas) share one copy of it in the page cache; searching
    it gives the same results as a copy. An index rebuilt in its place is a new file (an
    atomic rename): a mapping of the old one stays valid."""
    faiss = _faiss()
    if not path.is_file():
        raise UserError("faiss index file is missing", path=str(path))
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    except RuntimeError as exc:
        first = first_line(exc, "unreadable")
        raise UserError(f"cannot read the faiss index ({first})", path=str(path)) from None


def search(
    index: Any, queries: np.ndarray, k: int, *, refine: int = 0, vectors: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores [B, k], ids [B, k]); ids are -1 where fewer than k vectors exist.

    With `refine` >= 1 and the indexed `vectors` (any array-like [N, dim] indexed by id, such
    as a memory-mapped fp16 file), faiss proposes `refine` x k candidates and `rescore` ranks
    them by their exact inner products.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if refine > 0 and vectors is not None:
        fetch = k * refine
        if type(index).__name__.startswith("Gpu"):  # faiss-gpu answers at most 2,048 per query
            fetch = max(k, min(fetch, GPU_MAX_K))
        _, candidates = index.search(queries, fetch)
        return rescore(queries, candidates, vectors, k)
    scores, ids = index.search(queries, k)
    return scores, ids


def rescore(
    queries: np.ndarray, candidates: np.ndarray, vectors: Any, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among each query's candidate ids (-1 = none) by inner product with
    `vectors[id]` (shape [dim] or [1, dim]). Rows are read in id order; a store with a
    `prefetch(rows)` method (`StoredVectors`) is first asked for every row of the batch at
    once, then for each query's. Equal scores keep the lower id first."""
    if hasattr(vectors, "prefetch"):
        vectors.prefetch(candidates[candidates >= 0])
    out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for i, (query, found) in enumerate(zip(queries, candidates, strict=True)):
        rows = np.unique(found[found >= 0])
        if not len(rows):
            continue
        if hasattr(vectors, "prefetch"):  # reads turned slow within the batch
            vectors.prefetch(rows)
        scores = maxsim(query[None], np.asarray(vectors[rows]).reshape(len(rows), 1, -1))
        best = np.argsort(-scores, kind="stable")[:k]
        out_scores[i, : len(best)], out_ids[i, : len(best)] = scores[best], rows[best]
    return out_scores, out_ids


def maxsim(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """Late-interaction scores [C] of one query's vectors [n, dim] against documents
    [C, m, dim]: each query vector's best inner product within a document, summed (with
    n = m = 1, the inner product).

    Computed in float32 through torch: its fp16 -> fp32 conversion is about 10x faster than
    numpy's (0.1 ms against 1.1 ms for 1,000 rows of 768 here), and every query converts the
    hundreds of stored rows it reads.
    """
    import torch

    docs = torch.from_numpy(np.ascontiguousarray(documents)).float()
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    return torch.einsum("nd,cmd->cnm", q, docs).amax(dim=2).sum(dim=1).numpy()
