"""Vector search at scale on this machine's CPUs: prints JSON.

Synthetic clustered unit vectors (`--count`, default 2M; dims 128 and 768), 1,000 queries near
the data, exact ground truth from a flat index. For each index kind: build seconds, bytes per
vector held in memory (the serialised faiss index: codes, ids, graph) and on disk beside it,
single-query and batch-of-64 latencies (p50 / p95), and recall@10 against exact search
(|approximate top 10 & exact top 10| / 10, averaged over the queries).

Kinds measured, as `ragvqa index build` makes them:
- `flat` (exact),
- `ivfpq` (compressed: m bytes of PQ code per vector),
- `ivfpq+refine` (the same index; `--refine` x 10 candidates rescored exactly against the fp16
  vectors that the index folder keeps on disk and reads memory-mapped, so memory stays at the
  code size; its `cold_single_query` latencies evict those pages before every query),
- `hnsw` (graph over full vectors).
Targets (issue 4, 2 cores): a compressed index at <= 64 bytes per vector (of codes; IVF
also stores an 8-byte id per vector, reported in bytes_per_vector) with recall@10 >= 0.9,
and an accurate one with recall@10 >= 0.98 at p50 <= 5 ms per single query.

Run: python benchmarks/perf/search.py [--count 2000000] [--dims 128 768] [--kinds ...]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import tempfile
import time

import numpy as np

from ragvqa.index import faiss_index as fx
from ragvqa.index.stored import StoredVectors

NLIST, NPROBE, REFINE = 4096, 64, 10
KINDS = {
    "flat": lambda d: fx.FaissParams(kind="flat"),
    "ivfpq": lambda d: fx.FaissParams(kind="ivfpq", nlist=NLIST, m=min(64, d // 2), nprobe=NPROBE),
    "ivfpq+refine": lambda d: fx.FaissParams(
        kind="ivfpq", nlist=NLIST, m=min(64, d // 2), nprobe=NPROBE, refine=REFINE
    ),
    "hnsw": lambda d: fx.FaissParams(kind="hnsw", hnsw_m=32, ef_construction=80, ef_search=128),
}


def clustered(count: int, dim: int, seed: int, clusters: int = 10_000) -> np.ndarray:
    """Unit vectors around random centres (chunked, so the peak is the output array)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 200_000):
        n = min(200_000, count - start)
        x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim)).astype(
            np.float32
        )
        out[start : start + n] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def latencies(search, queries: np.ndarray, batch: int, rounds: int, before=None) -> dict:
    """p50 / p95 milliseconds of `search(batch of queries)`; `before()` runs untimed first."""
    times = []
    for i in range(rounds):
        q = queries[(i * batch) % len(queries) :][:batch]
        if before is not None:
            before()
        start = time.perf_counter()
        search(q)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {
        "p50_ms": round(times[len(times) // 2], 3),
        "p95_ms": round(times[int(len(times) * 0.95)], 3),
    }


def evict(path: str, stored: StoredVectors) -> None:
    """Drop a file's pages from this process's mapping and from the OS page cache, so the
    next reads go to the disk (pages still mapped would survive the fadvise)."""
    stored.array._mmap.madvise(mmap.MADV_DONTNEED)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def bytes_per_vector(index, count: int) -> float:
    import faiss

    with tempfile.NamedTemporaryFile() as tmp:
        faiss.write_index(index, tmp.name)
        return round(os.path.getsize(tmp.name) / count, 1)


def measure(kind: str, data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    start = time.perf_counter()
    index, params = fx.build_index(data, KINDS[kind](data.shape[1]))
    built = time.perf_counter() - start
    index = fx.configure(index, params)
    with tempfile.TemporaryDirectory(dir=os.environ.get("RAGVQA_BENCH_TMP")) as tmp:
        stored, path = None, os.path.join(tmp, "vectors.f16.npy")
        if params.refine:  # what an index folder keeps: fp16 vectors, read memory-mapped
            np.save(path, data.astype(np.float16))
            stored = StoredVectors(path)

        def search(q):
            return fx.search(index, q, 10, refine=params.refine, vectors=stored)

        _, found = search(queries)
        recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
        result = {
            "kind": kind,
            "params": {k: v for k, v in vars(params).items()},
            "build_s": round(built, 1),
            "bytes_per_vector": bytes_per_vector(index, len(data)),
            "disk_bytes_per_vector": 2 * data.shape[1] if stored is not None else 0,
            "recall_at_10": round(float(recall), 4),
            "single_query": latencies(search, queries, 1, 300),
            "batch_64": latencies(search, queries, 64, 30),
        }
        if stored is not None:
            result["cold_single_query"] = latencies(
                search, queries, 1, 100, lambda: evict(path, stored)
            )
        stored = None  # close the memory map before its folder goes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2_000_000)
    parser.add_argument("--dims", type=int, nargs="*", default=[128, 768])
    parser.add_argument("--kinds", nargs="*", default=list(KINDS))
    parser.add_argument("--nlist", type=int, default=NLIST)
    parser.add_argument("--nprobe", type=int, default=NPROBE)
    parser.add_argument("--refine", type=int, default=REFINE, help="exact rescoring of k x this")
    args = parser.parse_args()
    globals().update(NLIST=args.nlist, NPROBE=args.nprobe, REFINE=args.refine)
    import faiss

    runs = []
    for dim in args.dims:
        data = clustered(args.count, dim, seed=dim)
        rng = np.random.default_rng(1)
        queries = data[rng.choice(len(data), 1000, replace=False)]
        queries = queries + 0.05 * rng.normal(size=queries.shape).astype(np.float32)
        exact, _ = fx.build_index(data, fx.FaissParams(kind="flat"))
        _, truth = fx.search(exact, queries, 10)
        del exact
        for kind in args.kinds:
            runs.append({"dim": dim, "count": args.count, **measure(kind, data, queries, truth)})
            print(json.dumps(runs[-1]), flush=True, file=__import__("sys").stderr)
        del data
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "threads": faiss.omp_get_max_threads(),
                    "faiss": faiss.__version__,
                },
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
