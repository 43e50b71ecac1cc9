"""`ragvqa data`: the catalogue, resumable checksummed downloads against a real local HTTP
server with injected faults, the hub path through a local hub cache, list / fetch / verify."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import threading
import time
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.data.catalogue import load_catalogue
from ragvqa.data.fetch import RetryPolicy, download, fetch, status
from ragvqa.errors import UserError
from ragvqa.fetch import fetch as fetch_module
from ragvqa.fetch import landing

PAYLOAD = bytes(range(256)) * 1200  # 307,200 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CUT = 100_000  # the "cut" fault sends this many bytes, then drops the connection
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, timeout=2.0)
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class FileServer(ThreadingHTTPServer):
    """Serves `files` by path with Range support; `faults` is a queue, one fault per request:
    "cut" (half-sent body, then the connection drops), "500", "sleep" (answer after
    `sleep_s`), "ignore-range" (a 200 with the whole file even when a Range was asked)."""

    daemon_threads = True

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files
        self.faults: list[str] = []
        self.requests: list[dict[str, str | None]] = []
        self.sleep_s = 0.6

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        asked = self.headers.get("Range")
        srv.requests.append({"path": self.path, "range": asked})
        fault = srv.faults.pop(0) if srv.faults else None
        if fault == "sleep":
            time.sleep(srv.sleep_s)
            return
        if fault == "500":
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = srv.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if asked and fault != "ignore-range":
            start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:CUT] if fault == "cut" else body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = FileServer({"/f.bin": PAYLOAD})
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def write_catalogue(path: Path, entries: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "artefacts": entries}), encoding="utf-8")
    return path


def url_entry(server: FileServer, **changes) -> dict:
    entry = {
        "name": "blob",
        "description": "test file",
        "kind": "url",
        "url": server.url("/f.bin"),
        "size": len(PAYLOAD),
        "sha256": PAYLOAD_SHA,
        "license": "test",
        "benchmarks": ["infoseek"],
        "dest": "sub/f.bin",
    }
    return {**entry, **changes}


def one(tmp_path: Path, entry: dict):
    return load_catalogue(write_catalogue(tmp_path / "cat.yaml", [entry])).get(entry["name"])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(args: list[str], env: dict | None = None):
    return CliRunner().invoke(app, args, env=env)


# ------------------------------------------------------------------ downloads


def test_full_download_is_checked_and_renamed_into_place(server, tmp_path):
    artefact = one(tmp_path, url_entry(server))
    root = tmp_path / "data"
    result = fetch(artefact, root, policy=FAST, progress=False)
    dest = root / "sub" / "f.bin"
    assert result.outcome == "fetched" and result.path == dest
    assert sha(dest) == PAYLOAD_SHA and not (root / "sub" / "f.bin.part").exists()
    assert server.requests == [{"path": "/f.bin", "range": None}]
    assert status(artefact, root) == "present"
    # a present file is not fetched again
    assert fetch(artefact, root, policy=FAST, progress=False).outcome == "present"
    assert len(server.requests) == 1


def test_a_cut_download_resumes_with_a_range_request(server, tmp_path):
    artefact = one(tmp_path, url_entry(server))
    root = tmp_path / "data"
    server.faults = ["cut"]
    with pytest.raises(UserError, match="connection closed after 100,000 of 307,200 bytes"):
        fetch(artefact, root, policy=RetryPolicy(attempts=1, timeout=2.0), progress=False)
    part = root / "sub" / "f.bin.part"
    assert part.stat().st_size == CUT and not (root / "sub" / "f.bin").exists()
    assert status(artefact, root) == "partial"
    fetch(artefact, root, policy=FAST, progress=False)
    assert [r["range"] for r in server.requests] == [None, f"bytes={CUT}-"]
    assert sha(root / "sub" / "f.bin") == PAYLOAD_SHA and not part.exists()


def test_a_cut_within_one_run_is_retried_from_where_it_stopped(server, tmp_path):
    server.faults = ["cut", "cut"]
    dest = tmp_path / "f.bin"
    download(server.url("/f.bin"), dest, sha256=PAYLOAD_SHA, policy=FAST, progress=False)
    assert [r["range"] for r in server.requests] == [None, "bytes=100000-", "bytes=200000-"]
    assert sha(dest) == PAYLOAD_SHA


def test_a_server_that_ignores_range_restarts_cleanly(server, tmp_path):
    server.faults = ["cut", "ignore-range"]
    dest = tmp_path / "f.bin"
    download(server.url("/f.bin"), dest, sha256=PAYLOAD_SHA, policy=FAST, progress=False)
    assert [r["range"] for r in server.requests] == [None, "bytes=100000-"]
    assert dest.stat().st_size == len(PAYLOAD) and sha(dest) == PAYLOAD_SHA


def test_checksum_mismatch_is_rejected_and_moved_aside(server, tmp_path):
    wrong = hashlib.sha256(b"something else").hexdigest()
    artefact = one(tmp_path, url_entry(server, sha256=wrong))
    root = tmp_path / "data"
    with pytest.raises(UserError) as err:
        fetch(artefact, root, policy=FAST, progress=False)
    dest = root / "sub" / "f.bin"
    bad = root / "sub" / f"f.bin.bad-{PAYLOAD_SHA[:8]}"
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{dest}: checksum mismatch")
    assert f"sha256 {PAYLOAD_SHA[:12]}..., expected {wrong[:12]}..." in message
    assert bad.name in message
    assert not dest.exists() and not (root / "sub" / "f.bin.part").exists()
    assert bad.read_bytes() == PAYLOAD


def test_server_errors_are_retried_until_success(server, tmp_path):
    server.faults = ["500", "500"]
    dest = tmp_path / "f.bin"
    download(server.url("/f.bin"), dest, sha256=PAYLOAD_SHA, policy=FAST, progress=False)
    assert len(server.requests) == 3 and sha(dest) == PAYLOAD_SHA


def test_timeouts_give_a_clear_message_after_the_configured_attempts(server, tmp_path):
    server.faults = ["sleep", "sleep", "sleep"]
    policy = RetryPolicy(attempts=2, backoff=0.01, timeout=0.2)
    started = time.perf_counter()
    with pytest.raises(UserError) as err:
        download(server.url("/f.bin"), tmp_path / "f.bin", policy=policy, progress=False)
    assert str(err.value) == (
        f"cannot download {server.url('/f.bin')}: timed out (no data for 0.2 s) "
        "(2 attempts without progress)"
    )
    # 2 x 0.2 s plus backoff; well under the 30 s default timeout even on a loaded machine
    assert len(server.requests) == 2 and time.perf_counter() - started < 10.0
    assert not (tmp_path / "f.bin").exists()


def test_a_missing_file_is_not_retried(server, tmp_path):
    with pytest.raises(UserError, match=r"HTTP 404 .* for http://127\.0\.0\.1:\d+/nope"):
        download(server.url("/nope"), tmp_path / "x", policy=FAST, progress=False)
    assert len(server.requests) == 1


def test_disk_full_leaves_nothing_at_the_destination(server, tmp_path, monkeypatch):
    def full(out, chunk):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch_module, "_write_chunk", full)
    artefact = one(tmp_path, url_entry(server))
    root = tmp_path / "data"
    with pytest.raises(UserError) as err:
        fetch(artefact, root, policy=FAST, progress=False)
    part = root / "sub" / "f.bin.part"
    assert str(err.value) == (
        f"{part}: disk full while downloading; free some space and run the same command to "
        "resume (or delete the .part file)"
    )
    assert not (root / "sub" / "f.bin").exists() and part.exists()  # kept for the resume
    assert len(server.requests) == 1  # not retried


def test_unwritable_destination_is_refused_before_any_request(server, tmp_path, monkeypatch):
    artefact = one(tmp_path, url_entry(server))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot create the destination folder"):
        fetch(artefact, blocker, policy=FAST, progress=False)
    real_access = os.access
    monkeypatch.setattr(
        landing.os, "access", lambda p, mode: "locked" not in str(p) and real_access(p, mode)
    )
    with pytest.raises(UserError) as err:
        fetch(artefact, tmp_path / "locked", policy=FAST, progress=False)
    assert str(err.value) == f"{tmp_path / 'locked' / 'sub'}: destination folder is not writable"
    assert server.requests == []


def test_too_little_free_space_is_refused_before_any_request(server, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(landing.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    artefact = one(tmp_path, url_entry(server))
    with pytest.raises(UserError) as err:
        fetch(artefact, tmp_path / "data", policy=FAST, progress=False)
    assert str(err.value).endswith("not enough free space: 307.2 kB needed, 1.0 kB free")
    assert server.requests == []


# ------------------------------------------------------------------ hub


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A hub cache on disk, offline: models--/datasets-- folders, refs/main, snapshots/<rev>."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "datasets--org--kb"
    files = {
        "jsonl/rag/kb.jsonl": b'{"passage_id": "p1"}\n',
        "Infoseek_passages/test_passages-00000-of-00001.parquet": b"PAR1",
        "EVQA_passages/test_passages-00000-of-00001.parquet": b"PAR1-evqa",
    }
    for name, data in files.items():
        (repo / "snapshots" / revision / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / revision / name).write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return files


def hub_entry(**changes) -> dict:
    entry = {
        "name": "kb",
        "description": "a KB on the hub",
        "kind": "hub",
        "repo": "org/kb",
        "repo_type": "dataset",
        "license": "MIT",
        "benchmarks": ["infoseek"],
        "dest": "ret-m2kr",
    }
    return {**entry, **changes}


def test_hub_file_comes_from_the_hub_cache_into_the_data_root(hub_cache, tmp_path):
    data = hub_cache["jsonl/rag/kb.jsonl"]
    entry = hub_entry(
        filename="jsonl/rag/kb.jsonl", size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    artefact = one(tmp_path, entry)
    root = tmp_path / "data"
    assert status(artefact, root) == "absent"
    result = fetch(artefact, root, progress=False)
    target = root / "ret-m2kr" / "jsonl" / "rag" / "kb.jsonl"
    assert result.outcome == "fetched" and result.path == target
    assert target.read_bytes() == data and not target.is_symlink()
    assert status(artefact, root) == "present"


def test_hub_file_with_a_wrong_checksum_is_moved_aside(hub_cache, tmp_path):
    data = hub_cache["jsonl/rag/kb.jsonl"]
    entry = hub_entry(filename="jsonl/rag/kb.jsonl", sha256="0" * 64)
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch(one(tmp_path, entry), tmp_path / "data", progress=False)
    folder = tmp_path / "data" / "ret-m2kr" / "jsonl" / "rag"
    assert not (folder / "kb.jsonl").exists()
    assert (folder / f"kb.jsonl.bad-{hashlib.sha256(data).hexdigest()[:8]}").read_bytes() == data


def test_hub_subset_copies_only_the_matching_files(hub_cache, tmp_path):
    artefact = one(tmp_path, hub_entry(include=["Infoseek_passages/*"], dest="m2kr"))
    root = tmp_path / "data"
    fetch(artefact, root, progress=False)
    files = sorted(
        p.relative_to(root / "m2kr").as_posix()
        for p in (root / "m2kr").rglob("*")
        if p.is_file() and ".cache" not in p.parts
    )
    assert files == ["Infoseek_passages/test_passages-00000-of-00001.parquet"]
    assert status(artefact, root) == "present"


def test_hub_artefact_missing_everywhere_is_one_line(hub_cache, tmp_path):
    artefact = one(tmp_path, hub_entry(repo="org/absent", filename="x.jsonl"))
    with pytest.raises(UserError) as err:
        fetch(artefact, tmp_path / "data", progress=False)
    assert str(err.value) == (
        "cannot fetch kb: the hub (org/absent) is not reachable and the local hub cache "
        "does not have it"
    )


# ------------------------------------------------------------------ catalogue


def test_shipped_catalogue_has_every_named_entry_and_the_benchmark_names():
    catalogue = load_catalogue()
    expected = {
        "infoseek-val": "url", "infoseek-train": "url", "infoseek-val-withkb": "url",
        "infoseek-train-withkb": "url", "infoseek-val-qtype": "manual",
        "evqa-train": "url", "evqa-val": "url", "evqa-test": "url", "evqa-kb": "url",
        "ret-m2kr-kb-infoseek50k": "hub", "m2kr-infoseek-passages": "hub",
        "m2kr-evqa-passages": "hub", "oven-images": "manual", "inaturalist-2021": "manual",
        "gldv2-train": "manual", "ret-clip-vit-l-14": "hub", "ret-openclip-vit-h-14": "hub",
        "ret-openclip-vit-g-14": "hub", "qwen2.5-vl-7b-instruct": "hub",
        "minilm-l6-v2": "pypi", "gemma-3-270m": "pypi", "wiki-vital-leads": "pypi",
    }  # fmt: skip
    kinds = {a.name: a.kind for a in catalogue.artefacts}
    assert {name: kinds.get(name) for name in expected} == expected
    assert catalogue.get("evqa-kb").url == (
        "https://storage.googleapis.com/encyclopedic-vqa/encyclopedic_kb_wiki.zip"
    )
    kb = catalogue.get("ret-m2kr-kb-infoseek50k")
    assert (kb.repo, kb.repo_type, kb.filename) == (
        "aimagelab/ReT-M2KR",
        "dataset",
        "jsonl/rag/kb_infoseek50k.jsonl",
    )
    assert catalogue.get("qwen2.5-vl-7b-instruct").repo == "Qwen/Qwen2.5-VL-7B-Instruct"
    for artefact in catalogue.artefacts:
        if artefact.url:
            assert artefact.url.startswith("https://storage.googleapis.com/")
        if artefact.kind == "manual":
            assert artefact.instructions and "$RAGVQA_DATA" in artefact.instructions


@pytest.mark.parametrize("benchmark", ["infoseek", "evqa"])
def test_benchmark_data_names_exist_and_match_the_benchmark_paths(benchmark):
    catalogue = load_catalogue()
    spec = yaml.safe_load((BENCHMARKS / benchmark / "benchmark.yaml").read_text())
    assert spec["data"]
    for role, name in spec["data"].items():
        artefact = catalogue.get(name)  # raises for an unknown name
        value = spec
        for part in role.split("."):
            value = value[part]
        relative = value.removeprefix("${RAGVQA_DATA}/")
        assert relative == artefact.dest or relative.startswith(artefact.dest + "/"), role
        assert benchmark in artefact.benchmarks


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"sha265": "x"}, "artefact 'blob': unknown field 'sha265'; did you mean 'sha256'?"),
        ({"sha256": "ABC"}, "artefact 'blob': 'sha256' must be 64 lower-case hex digits or null"),
        ({"dest": "../up"}, "artefact 'blob': dest must be a relative path under the data root"),
        ({"kind": "ftp"}, "artefact 'blob': kind must be one of url, hub, manual, pypi, not 'ftp'"),
        ({"instructions": "by hand"}, "artefact 'blob': 'instructions' is only for manual"),
    ],
)
def test_bad_catalogue_entries_are_named(server, tmp_path, change, problem):
    path = write_catalogue(tmp_path / "cat.yaml", [url_entry(server, **change)])
    with pytest.raises(UserError) as err:
        load_catalogue(path)
    assert str(err.value).startswith(f"{path}: {problem}")


# ------------------------------------------------------------------ CLI


def test_unknown_name_gets_did_you_mean_and_exit_2(tmp_path):
    result = cli(["data", "fetch", "infoseek-vall", "--to", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        result.output
        == "error: unknown data artefact 'infoseek-vall'; did you mean 'infoseek-val'?\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_fetch_without_a_data_root_is_one_line(tmp_path):
    result = cli(["data", "fetch", "evqa-test"], env={"RAGVQA_DATA": ""})
    assert result.exit_code == 2
    assert result.output == "error: no data root: pass --to DIR or set RAGVQA_DATA\n"


def test_fetch_by_benchmark_name_uses_benchmark_yaml_and_reports_manual_ones(server, tmp_path):
    """`fetch infoseek` with a catalogue where the question file is served locally."""
    entries = [
        url_entry(server, name="infoseek-val", dest="infoseek/infoseek_val.jsonl"),
        url_entry(server, name="infoseek-val-withkb", dest="infoseek/infoseek_val_withkb.jsonl"),
        {"name": "infoseek-val-qtype", "description": "q", "kind": "manual", "license": "t",
         "benchmarks": ["infoseek"], "dest": "infoseek/infoseek_val_qtype.jsonl",
         "instructions": "ask a friend for the qtype file"},
        {"name": "oven-images", "description": "i", "kind": "manual", "license": "t",
         "benchmarks": ["infoseek"], "dest": "oven_images", "instructions": "form"},
    ]  # fmt: skip
    cat = write_catalogue(tmp_path / "cat.yaml", entries)
    root = tmp_path / "data"
    (root / "oven_images" / "00").mkdir(parents=True)
    (root / "oven_images" / "00" / "oven_00000001.jpg").write_bytes(b"x")
    args = ["data", "fetch", "infoseek", "--to", str(root), "--catalogue", str(cat)]
    result = cli([*args, "--no-progress"])
    assert result.exit_code == 1, result.output
    assert sha(root / "infoseek" / "infoseek_val.jsonl") == PAYLOAD_SHA
    assert sha(root / "infoseek" / "infoseek_val_withkb.jsonl") == PAYLOAD_SHA
    assert "manual infoseek-val-qtype: ask a friend for the qtype file" in result.output
    assert "present oven-images" in result.output
    assert result.output.rstrip().endswith(
        "not fetched (get by hand, see above): infoseek-val-qtype"
    )
    assert len(server.requests) == 2


def test_list_shows_present_absent_and_partial(tmp_path):
    root = tmp_path / "data"
    (root / "infoseek").mkdir(parents=True)
    (root / "infoseek" / "infoseek_val.jsonl").write_text("{}\n")
    (root / "evqa").mkdir()
    (root / "evqa" / "test.csv.part").write_bytes(b"question,")
    result = cli(["data", "list", "--root", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert len(rows) == len(load_catalogue().artefacts)
    assert rows["infoseek-val"]["status"] == "present"
    assert rows["evqa-test"]["status"] == "partial"
    assert rows["evqa-kb"]["status"] == "absent"
    assert rows["ret-m2kr-kb-infoseek50k"]["status"] == "absent"
    assert rows["evqa-test"]["path"] == str(root / "evqa" / "test.csv")
    counts = {s: sum(r["status"] == s for r in rows.values()) for s in ("present", "partial")}
    assert counts == {"present": 1, "partial": 1}


def test_verify_counts_missing_oven_images_and_checks_record_counts(tmp_path):
    root = tmp_path / "data"
    for rel in ("oven_images/00/oven_00000001.jpg", "oven_images/01/oven_01000002.JPEG"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"img")
    rows = [("val_0", "oven_00000001"), ("val_1", "oven_01000002"), ("val_2", "oven_02000003"),
            ("val_3", "oven_00000009")]  # fmt: skip
    questions = root / "infoseek" / "infoseek_val.jsonl"
    questions.parent.mkdir(parents=True)
    questions.write_text(
        "".join(json.dumps({"data_id": d, "image_id": i, "question": "q?"}) + "\n" for d, i in rows)
    )
    result = cli(["data", "verify", str(root), "--benchmark", "infoseek", "--json"])
    report = json.loads(result.stdout)
    images = report["benchmarks"]["infoseek"]
    assert (images["questions"], images["missing_images"]) == (4, 2)
    assert images["first_missing"] == ["val_2", "val_3"]
    assert images["image_roots"] == {"oven": {"path": str(root / "oven_images"), "present": True}}
    checks = {c["name"]: c for c in report["artefacts"]}
    assert set(checks) == {a.name for a in load_catalogue().for_benchmark("infoseek")}
    # 4 lines where the catalogue expects the official 73,620: a failed check, exit 1
    assert (checks["infoseek-val"]["records"], checks["infoseek-val"]["records_expected"]) == (
        4,
        73620,
    )
    assert checks["infoseek-val"]["ok"] is False and checks["oven-images"]["status"] == "present"
    assert report["ok"] is False and result.exit_code == 1


def test_verify_counts_missing_evqa_images_through_the_benchmark_roots(tmp_path):
    root = tmp_path / "data"
    landmark = "abc0123456789def"
    image = root / "gldv2" / "train" / "a" / "b" / "c" / f"{landmark}.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"img")
    header = ["question", "answer", "question_type", "dataset_image_ids", "dataset_name"]
    lines = [
        ",".join(header),
        f"Where?,Paris,templated,{landmark}|ffff000000000000,landmarks",
        "When?,1900,templated,0123456789abcdef,landmarks",
        "What?,A moth,automatic,1234,inaturalist",
    ]
    (root / "evqa").mkdir()
    (root / "evqa" / "test.csv").write_text("\n".join(lines) + "\n")
    result = cli(["data", "verify", str(root), "--benchmark", "evqa", "--json"])
    report = json.loads(result.stdout)
    images = report["benchmarks"]["evqa"]
    assert (images["questions"], images["missing_images"], images["first_missing"]) == (
        3,
        2,
        ["1", "2"],
    )
    assert images["image_roots"]["landmarks"]["present"] is True
    assert images["image_roots"]["inaturalist"]["present"] is False
    checks = {c["name"]: c for c in report["artefacts"]}
    assert (checks["evqa-test"]["records"], checks["evqa-test"]["records_expected"]) == (3, 5750)


# ------------------------------------------------------------------ bench defaults


def test_bench_names_the_missing_default_file_and_the_fetch_command(tmp_path, monkeypatch):
    from ragvqa.benchmarks import get_benchmark
    from ragvqa.cli.bench import bench_spec

    root = tmp_path / "data"
    monkeypatch.setenv("RAGVQA_DATA", str(root))
    infoseek = get_benchmark("infoseek")
    none = {"questions": None, "qtypes": None, "withkb": None, "bem": None}
    with pytest.raises(UserError) as err:
        bench_spec(infoseek, none)
    assert str(err.value) == (
        f"{root}/infoseek/infoseek_val.jsonl: file not found; "
        "`ragvqa data fetch infoseek-val --to $RAGVQA_DATA` provides it"
    )
    (root / "infoseek").mkdir(parents=True)
    (root / "infoseek" / "infoseek_val.jsonl").write_text("{}\n")
    with pytest.raises(UserError, match=r"infoseek_val_qtype\.jsonl: file not found; `ragvqa data "
                       r"fetch infoseek-val-qtype --to \$RAGVQA_DATA`"):  # fmt: skip
        bench_spec(infoseek, none)
    for name in ("infoseek_val_qtype.jsonl", "infoseek_val_withkb.jsonl"):
        (root / "infoseek" / name).write_text("{}\n")
    with pytest.raises(UserError) as err:
        bench_spec(infoseek, none)
    assert str(err.value) == (
        f"no image folder: pass --images, or get {root}/oven_images "
        "(`ragvqa data fetch oven-images --to $RAGVQA_DATA` provides it)"
    )
    # files given on the command line are not checked here (their loaders say "not found")
    (root / "oven_images").mkdir()
    spec = bench_spec(infoseek, {**none, "withkb": tmp_path / "elsewhere.jsonl"})
    assert spec.files["withkb"] == str(tmp_path / "elsewhere.jsonl")
    assert spec.images == {"oven": str(root / "oven_images")}
    # the withkb file is optional: a missing default leaves entity recall unjudged
    (root / "infoseek" / "infoseek_val_withkb.jsonl").unlink()
    assert "withkb" not in bench_spec(infoseek, none).files
    # a file the benchmark does not read is refused
    with pytest.raises(UserError, match="benchmark 'infoseek' reads no --bem file"):
        bench_spec(infoseek, {**none, "bem": tmp_path})
