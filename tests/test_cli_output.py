"""Results on stdout, logs on stderr, nothing cut (issue 23, item 3).

A result table goes to stdout: on a terminal a rich table whose long cells fold (never an
ellipsis), in a pipe tab-separated rows, one row a line, so `grep` finds whole ids at any
width. Every listing command, and `kb build`, `index build` and `data fetch`, has `--json`.
`bench --help` names every registered benchmark and its whole `--out` default at 80 columns.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import write_evqa_kb
from rich.table import Table
from typer.testing import CliRunner

from ragvqa.benchmarks import benchmark_names
from ragvqa.cli import common
from ragvqa.cli.main import app
from ragvqa.data.catalogue import load_catalogue
from ragvqa.kb.store import KBStore
from ragvqa.prompts import PromptLibrary

REFS = PromptLibrary().refs()
NAMES = load_catalogue(None).names()
BOX = set("│┃┏┓┗┛━─╭╮╰╯")
OUT_DEFAULT = "runs/BENCHMARK-PIPELINE-TEMPLATE"


def piped(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    """`ragvqa ARGS` with stdout and stderr piped (not terminals), at COLUMNS columns."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAGVQA_DATA", "FORCE_COLOR")}
    env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "ragvqa.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def first_fields(stdout: str) -> list[str]:
    return [line.split("\t")[0] for line in stdout.splitlines()]


@pytest.mark.parametrize("columns", [80, 20])
def test_prompts_list_in_a_pipe_is_whole_rows_on_stdout(columns):
    proc = piped("prompts", "list", columns=columns)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no table, no note: the result is all on stdout
    lines = proc.stdout.splitlines()
    assert lines[0].split("\t") == ["template", "inputs", "description"]
    assert first_fields(proc.stdout)[1:] == REFS  # every ref whole, one row a line
    assert all(len(line.split("\t")) == 3 for line in lines)
    assert "…" not in proc.stdout and not BOX & set(proc.stdout)
    for ref in REFS:  # what `ragvqa prompts list | grep REF` finds: the whole row
        (row,) = [line for line in lines if ref + "\t" in line]
        assert row.startswith(ref + "\t")


@pytest.mark.parametrize("columns", [80, 20])
def test_data_list_in_a_pipe_is_whole_rows_on_stdout(columns):
    proc = piped("data", "list", columns=columns)
    assert proc.returncode == 0, proc.stderr
    assert first_fields(proc.stdout) == ["name", *NAMES]
    assert "…" not in proc.stdout and not BOX & set(proc.stdout)
    # the note about the status column is a log: stderr, and nothing of the table there
    assert "pass --root DIR or set RAGVQA_DATA" in proc.stderr
    assert not any(name in proc.stderr for name in NAMES)


def test_prompts_list_on_a_terminal_folds_and_keeps_ids_on_one_line():
    """In a pseudo-terminal of 80 columns: a rich table on stdout, each ref on one line."""
    main, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ragvqa.cli", "prompts", "list"],
        stdout=secondary,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""
    shown = b"".join(chunks).decode()
    assert "│" in shown and "…" not in shown
    for ref in REFS:
        assert ref in shown, ref


def test_show_table_folds_on_a_narrow_terminal(monkeypatch, capsys):
    """A cell wider than the terminal folds onto more lines: every character is shown."""
    monkeypatch.setattr(common, "_stdout_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "30")
    long_id = "answer/" + "x" * 40 + "@1"
    table = Table("template", "description")
    table.add_row(common.shown(long_id), "a description that wraps as well")
    common.show_table(table)
    out = capsys.readouterr()
    assert out.err == "" and "…" not in out.out
    first = [line.split("│")[1].strip() for line in out.out.splitlines() if line.startswith("│")]
    assert "".join(first) == long_id


def test_show_table_in_a_pipe_escapes_tabs_and_line_breaks(capsys):
    table = Table("name", "value")
    table.add_row(common.shown("a\tb"), "line\nbreak")
    table.add_row("[bold]x[/]", common.shown("[not markup]"))
    common.show_table(table)
    assert capsys.readouterr().out == "name\tvalue\na\\tb\tline\\nbreak\nx\t[not markup]\n"


def test_listing_json_parses():
    runner = CliRunner()
    listed = runner.invoke(app, ["prompts", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == REFS
    data = runner.invoke(app, ["data", "list", "--json"], env={"RAGVQA_DATA": ""})
    assert data.exit_code == 0 and [row["name"] for row in json.loads(data.stdout)] == NAMES


def test_bench_help_at_80_columns_names_every_benchmark_and_the_whole_out_default():
    proc = piped("bench", "--help", columns=80)
    assert proc.returncode == 0, proc.stderr
    assert "wn-wiki" in benchmark_names()
    for name in benchmark_names():
        assert name in proc.stdout, name
    assert OUT_DEFAULT in proc.stdout and "…" not in proc.stdout


def test_bench_help_names_a_benchmark_registered_later(monkeypatch):
    """The names come from the registry when the help is shown, not from a list in the CLI."""
    from ragvqa.registry import BENCHMARKS

    monkeypatch.setitem(BENCHMARKS._targets, "my-bench", "ragvqa.benchmarks.evqa:EncyclopedicVQA")
    result = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "my-bench" in result.stdout


# ------------------------------------------------------------ build and fetch: --json


def test_kb_build_json_and_info_on_stdout(tmp_path):
    runner = CliRunner()
    out = tmp_path / "kb"
    args = ["kb", "build", "--format", "evqa", "--input", str(write_evqa_kb(tmp_path))]
    built = runner.invoke(app, [*args, "--out", str(out), "--no-progress", "--json"])
    assert built.exit_code == 0, built.output
    data = json.loads(built.stdout)  # stdout is the JSON alone; the summary line is on stderr
    assert "pages -> " in built.stderr
    store = KBStore(out)
    assert data["path"] == str(out) and data["fingerprint"] == store.fingerprint
    assert data["pages"] == 3 and data["passages"] == len(store) and data["shard_count"] >= 1
    assert {k: data[k] for k in store.info()} == store.info()
    info = runner.invoke(app, ["kb", "info", str(out)])
    assert info.exit_code == 0 and info.stderr == ""
    assert f"fingerprint\t{store.fingerprint}" in info.stdout.splitlines()
    assert f"passages\t{len(store)}" in info.stdout.splitlines()


def test_index_build_json_on_stdout(tmp_path):
    from ret_fixtures import TEXT, VISION, clip_tokenizer, image_processor

    from ragvqa.kb.build import BuildParams, build_kb
    from ragvqa.models.checkpoint import save_retriever
    from ragvqa.models.config import HeadConfig, RetrieverConfig
    from ragvqa.models.processor import RetProcessor
    from ragvqa.models.retriever import RetRetriever

    kb = tmp_path / "kb"
    build_kb(BuildParams("evqa", str(write_evqa_kb(tmp_path))), kb, progress=False)
    head = HeadConfig((0, 1), (0, 1), hidden_size=64, num_queries=4, output_vectors=1, proj_size=8)
    config = RetrieverConfig(dict(TEXT), dict(VISION), query=head, document=None)
    processor = RetProcessor(clip_tokenizer(tmp_path / "tok"), image_processor())
    encoder = save_retriever(RetRetriever(config), tmp_path / "model", processor)
    out = tmp_path / "idx"
    args = ["index", "build", "--kb", str(kb), "--encoder", str(encoder), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "flat index in" in result.stderr
    assert data["path"] == str(out) and data["documents"] == len(KBStore(kb))
    assert data["kb"]["fingerprint"] == KBStore(kb).fingerprint
    for name, meta in data["files"].items():
        assert meta["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    info = CliRunner().invoke(app, ["index", "info", str(out), "--json"])
    assert {k: v for k, v in data.items() if k not in ("path", "files")} == json.loads(info.stdout)


def _catalogue(tmp_path: Path, payload: bytes) -> Path:
    entries = [
        {
            "name": "here-already",
            "description": "a file already under the root",
            "kind": "url",
            "url": "http://127.0.0.1:9/never-asked.bin",
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "license": "test",
            "benchmarks": ["infoseek"],
            "dest": "sub/a-rather-long-file-name-that-must-never-be-cut.bin",
        },
        {
            "name": "by-hand",
            "description": "got by hand",
            "kind": "manual",
            "instructions": "ask for it",
            "license": "test",
            "benchmarks": ["evqa"],
            "dest": "manual/file.bin",
        },
    ]
    path = tmp_path / "cat.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "artefacts": entries}), encoding="utf-8")
    return path


def test_data_fetch_json_and_verify_table_on_stdout(tmp_path):
    payload = b"ragvqa" * 100
    cat = _catalogue(tmp_path, payload)
    root = tmp_path / "data"
    here = root / "sub" / "a-rather-long-file-name-that-must-never-be-cut.bin"
    here.parent.mkdir(parents=True)
    here.write_bytes(payload)
    runner = CliRunner()
    args = ["data", "fetch", "here-already", "by-hand", "--to", str(root), "--catalogue", str(cat)]
    fetched = runner.invoke(app, [*args, "--no-progress", "--json"])
    assert fetched.exit_code == 1  # the manual artefact is still missing
    data = json.loads(fetched.stdout)
    assert data["root"] == str(root) and data["ok"] is False
    outcomes = {a["name"]: (a["outcome"], a["path"]) for a in data["artefacts"]}
    assert outcomes == {
        "here-already": ("present", str(here)),
        "by-hand": ("manual", str(root / "manual" / "file.bin")),
    }
    assert "ask for it" in fetched.stderr  # the instructions are for people: stderr
    verified = runner.invoke(app, ["data", "verify", str(root), "--catalogue", str(cat)])
    assert verified.exit_code == 0, verified.output
    rows = [line.split("\t") for line in verified.stdout.splitlines()]
    assert rows[0] == ["name", "status", "checks"]
    assert [row[:2] for row in rows[1:3]] == [["here-already", "present"], ["by-hand", "absent"]]
    assert "here-already" not in verified.stderr
