"""A benchmark from another package runs through `bench`, `score` and `compare` with no change
to ragvqa (issue 24): the test builds the package (`ragvqa_glossary`, from
`tests/plugins/glossary.py`) with an entry point in the `ragvqa.benchmarks` group and a file
role of its own (`key`), puts it on the PYTHONPATH of `ragvqa` processes, and answers the
questions with a scripted OpenAI-compatible server (retrieval off: no model loads anywhere)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
QUESTIONS = [
    ("g1", "Which city has the Eiffel Tower?", "city", "Paris"),
    ("g2", "Which city has the Colosseum?", "city", "Rome"),
    ("g3", "Which river flows through Cairo?", "river", "Nile"),
    ("g4", "Which river flows through Vienna?", "river", "Danube"),
    ("g5", "Who wrote Hamlet?", "person", "Shakespeare"),
    ("g6", "Who painted the Mona Lisa?", "person", "Leonardo"),
]
# what each run's reader (the server's model "a" or "b") answers; anything else gets "?"
RIGHT = {"a": {"g1", "g3", "g5"}, "b": {"g1", "g2", "g3", "g4"}}


class _Reader(BaseHTTPRequestHandler):
    """/v1/chat/completions: the gold answer where the model is to be right, else "?"."""

    def do_POST(self):  # noqa: N802 (the http.server name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = json.dumps(body["messages"])
        answer = "?"
        for qid, question, _, gold in QUESTIONS:
            if question in text and qid in RIGHT[body["model"]]:
                answer = gold.lower()  # the key's answers are matched without case
        reply = {"choices": [{"message": {"content": answer}, "finish_reason": "stop"}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        return None  # quiet


@pytest.fixture(scope="module")
def reader_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Reader)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The plug-in package, installed the way pip leaves one: the module and a .dist-info
    folder whose entry_points.txt registers it in the `ragvqa.benchmarks` group."""
    root = tmp_path_factory.mktemp("site")
    (root / "ragvqa_glossary").mkdir()
    shutil.copy(HERE / "plugins" / "glossary.py", root / "ragvqa_glossary" / "__init__.py")
    dist = root / "ragvqa_glossary-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ragvqa-glossary\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[ragvqa.benchmarks]\nglossary = ragvqa_glossary:Glossary\n"
    )
    return root


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("glossary")
    questions, key = folder / "questions.jsonl", folder / "key.jsonl"
    questions.write_text(
        "".join(json.dumps({"id": i, "question": q, "topic": t}) + "\n" for i, q, t, _ in QUESTIONS)
    )
    key.write_text("".join(json.dumps({"id": i, "answer": a}) + "\n" for i, _, _, a in QUESTIONS))
    return {"questions": questions, "key": key}


def ragvqa(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "RAGVQA_CACHE": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "ragvqa.cli", *args],
        capture_output=True, text=True, timeout=180, cwd=cwd, env=env,
    )  # fmt: skip


def test_an_installed_plugin_runs_through_bench_score_and_compare(
    world, site, files, reader_url, tmp_path
):
    runs = {}
    for model in ("a", "b"):
        reader = f"reader.generator={{type: openai, base_url: '{reader_url}', model: {model}}}"
        out = tmp_path / f"run-{model}"
        proc = ragvqa(
            site, tmp_path, "bench", "glossary", "--pipeline", str(world["pipeline"]),
            "--set", "retrieval.mode=none", "--set", reader, "--prompt", "answer/no_retrieval@1",
            "--questions", str(files["questions"]), "--file", f"key={files['key']}",
            "--out", str(out), "--json",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs[model] = (out, json.loads(proc.stdout))
    # A: one right per topic; B: both cities and rivers, no person (worked out by hand)
    assert runs["a"][1]["official"] == {"all": 50.0, "city": 50.0, "river": 50.0, "person": 50.0}
    assert runs["b"][1]["official"] == {"all": 66.67, "city": 100.0, "river": 100.0, "person": 0.0}

    # score: the plug-in's own role through --file, the same figures as the run's
    out_b = runs["b"][0]
    proc = ragvqa(
        site, tmp_path, "score", "glossary", "--predictions", str(out_b / "predictions.jsonl"),
        "--file", f"questions={files['questions']}", "--file", f"key={files['key']}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    scored = json.loads(proc.stdout)
    assert {k: scored[k] for k in ("all", "city", "river", "person")} == runs["b"][1]["official"]
    assert "All\t66.67" in proc.stderr and "scored 6 of 6 predictions" in proc.stderr
    # its required role missing: one line naming how to give it
    predictions = str(out_b / "predictions.jsonl")
    proc = ragvqa(site, tmp_path, "score", "glossary", "--predictions", predictions,
                  "--questions", str(files["questions"]))  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: no key file: pass --file key=PATH"), proc.stderr

    # compare: three groups' counts give each bootstrap resample's figures
    proc = ragvqa(site, tmp_path, "compare", str(runs["a"][0]), str(out_b), "--json",
                  "--resamples", "200")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    got = {m["name"]: (m["a"], m["b"], m["delta"]) for m in result["metrics"]}
    assert got == {
        "all": (50.0, 66.67, 16.67),
        "city": (50.0, 100.0, 50.0),
        "river": (50.0, 100.0, 50.0),
        "person": (50.0, 0.0, -50.0),
    }
    assert [f["data_id"] for f in result["fixed"]] == ["g2", "g4"]
    assert [f["data_id"] for f in result["broken"]] == ["g5"]
    assert result["dataset"] == "glossary" and result["common"] == 6
