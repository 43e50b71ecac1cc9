"""The prompt loop and the output of the commands, as a new user meets them on the demo world:
`prompts new | render --text | validate --update-golden`, `demo`'s next commands and its
`benchmarks.yaml`, recall@K up to the retrieval depth, human metric names, `--help` showing
flags as flags, `-v`, and the spinner while a reader starts."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import infoseek_bench
from test_feedback import read_terminal
from typer.main import get_command
from typer.testing import CliRunner

from ragvqa.cli import main as cli_main
from ragvqa.cli.demo import next_commands
from ragvqa.cli.main import app
from ragvqa.errors import UserError
from ragvqa.eval.names import metric_label
from ragvqa.eval.retrieval_metrics import recall_ks
from ragvqa.prompt_versions import (
    GOLDEN_COMMAND,
    _write_new,
    golden_file,
    golden_render,
    new_version,
)
from ragvqa.prompts import PromptLibrary

runner = CliRunner()
SHIPPED = PromptLibrary()
GOLDEN = Path(__file__).parent / "golden" / "prompts"


def cli(*args: str | Path, **env: str):
    return runner.invoke(app, [str(a) for a in args], env=env or None)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A copy of the shipped prompts/ with its golden renders beside it, as in a checkout."""
    root = tmp_path / "prompts"
    shutil.copytree(SHIPPED.root, root)
    shutil.copytree(GOLDEN, tmp_path / "tests" / "golden" / "prompts")
    return root


def front_matter(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8").split("---\n")[1])


# --------------------------------------------------------------------------- prompts new


def test_prompts_new_writes_the_next_version_locked_with_its_golden(library: Path):
    result = cli("prompts", "new", "answer/evidence_short", "--from", "answer/evidence_short@1",
                 "--root", library)  # fmt: skip
    assert result.exit_code == 0, result.output
    v1, v2 = (library / "answer" / "evidence_short" / f"v{n}.j2" for n in (1, 2))
    meta = front_matter(v2)
    assert (meta["id"], meta["version"], meta["parent"]) == (
        "answer/evidence_short",
        2,
        "answer/evidence_short@1",
    )
    assert meta["changelog"] == [
        "v1: first version: only the best passage is shown, answer in a few words.",
        "v2: made from answer/evidence_short@1",
    ]
    assert meta["inputs"] == ["question", "passages", "image"]  # kept from v1
    assert v2.read_text().split("---\n", 2)[2] == v1.read_text().split("---\n", 2)[2]
    lock = json.loads((library / "LOCK.json").read_text())
    new = PromptLibrary(library).get("answer/evidence_short@2")
    assert lock["answer/evidence_short@2"] == new.sha256
    assert lock["answer/evidence_short@1"] == SHIPPED.get("answer/evidence_short@1").sha256
    golden = golden_file(library.parent / "tests" / "golden" / "prompts", new.ref)
    assert json.loads(golden.read_text()) == golden_render(new)
    assert "wrote" in result.stderr and result.stdout == ""
    # the suite stays green: locked, golden, valid
    assert cli("prompts", "validate", "--root", library).exit_code == 0
    # again: a third version; the second is never written over
    before = v2.read_bytes()
    again = cli("prompts", "new", "answer/evidence_short", "--root", library, "-m", "shorter",
                "--json")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["ref"] == "answer/evidence_short@3"
    assert v2.read_bytes() == before
    meta3 = front_matter(v2.with_name("v3.j2"))
    assert (meta3["parent"], meta3["changelog"][-1]) == ("answer/evidence_short@2", "v3: shorter")


def test_prompts_new_from_text_and_from_an_editor(library: Path, tmp_path: Path, monkeypatch):
    body = tmp_path / "body.j2"
    body.write_text("{% block user %}\nQ: {{ question }}\nA:\n{% endblock %}\n")
    made = cli("prompts", "new", "answer/mine", "--from", "answer/no_retrieval@1", "--text",
               body, "--root", library, "-m", "bare question")  # fmt: skip
    assert made.exit_code == 0, made.output
    path = library / "answer" / "mine" / "v1.j2"
    meta = front_matter(path)  # a new id: version 1, its own changelog, the parent named
    assert (meta["version"], meta["parent"], meta["changelog"]) == (
        1,
        "answer/no_retrieval@1",
        ["v1: bare question"],
    )
    template = PromptLibrary(library).get("answer/mine@1")
    assert template.render(question="Who?").messages[0].text == "Q: Who?\nA:"

    # --edit: the editor changes a copy of the latest version; that becomes version 2
    monkeypatch.chdir(tmp_path)
    editor = "sed -i s/Q:/Question:/"
    edited = cli("prompts", "new", "answer/mine", "--edit", "--root", library, EDITOR=editor)
    assert edited.exit_code == 0, edited.output
    second = PromptLibrary(library).get("answer/mine@2")
    assert second.render(question="Who?").messages[0].text == "Question: Who?\nA:"

    # an edit that does not render: nothing written, nothing locked, the edit kept
    lock = (library / "LOCK.json").read_bytes()
    bad = cli("prompts", "new", "answer/mine", "--edit", "--root", library,
              EDITOR="sed -i s/question/questoin/g")  # fmt: skip
    assert bad.exit_code == 2
    assert "new version answer/mine@3: unknown inputs ['questoin']" in bad.stderr
    assert not (library / "answer" / "mine" / "v3.j2").exists()
    assert (library / "LOCK.json").read_bytes() == lock
    assert "{{ questoin }}" in (tmp_path / "prompt-draft.j2").read_text()
    assert "--text prompt-draft.j2" in bad.stderr


def test_new_version_refuses_to_overwrite_and_bad_input(library: Path, tmp_path: Path):
    existing = library / "answer" / "evidence_short" / "v1.j2"
    before = existing.read_bytes()
    with pytest.raises(UserError, match="exists: a version never changes"):
        _write_new(existing, "anything")
    assert existing.read_bytes() == before and not list(existing.parent.glob(".*.tmp"))
    with pytest.raises(UserError, match="is not group/name"):
        new_version(library, "../escape", from_ref="answer/evidence_short@1")
    with pytest.raises(UserError, match="unknown prompt template 'answer/brand_new'"):
        new_version(library, "answer/brand_new")  # a new id needs from_ref
    dry = new_version(library, "answer/evidence_short", dry_run=True)
    assert dry.ref == "answer/evidence_short@2" and not dry.path.exists()
    assert dry.path == library / "answer" / "evidence_short" / "v2.j2"


def test_render_text_prints_the_chat_for_reading(tmp_path: Path):
    passages = tmp_path / "p.jsonl"
    passages.write_text(json.dumps({"text": "Built in 1850.", "title": "Bridge"}) + "\n")
    result = cli("prompts", "render", "answer/evidence_short@1", "--question", "When?",
                 "--passages", passages, "--image", "q.jpg", "--text")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "── system ──\n"
        "You answer questions about images using the evidence given. Reply with a short answer "
        "only: a name, a number, a date or a few words.\n\n"
        "── user ──\n"
        "[image: q.jpg]\n"
        "Evidence (Bridge):\nBuilt in 1850.\n\nQuestion: When?\nShort answer:\n"
    )


def test_validate_names_and_runs_the_golden_update(library: Path):
    folder = library.parent / "tests" / "golden" / "prompts"
    missing = golden_file(folder, "answer/no_retrieval@1")
    missing.unlink()
    changed = golden_file(folder, "answer/evidence_short@1")
    changed.write_text(changed.read_text().replace("Short answer:", "Answer:"))
    failed = cli("prompts", "validate", "--root", library)
    assert failed.exit_code == 1
    lines = failed.stderr.splitlines()
    assert f"FAIL answer/evidence_short@1: renders differently from {changed.name}; if the " \
        f"change is intended, run `{GOLDEN_COMMAND}` and review the diff" in lines  # fmt: skip
    assert (
        f"FAIL answer/no_retrieval@1: no golden render {missing.name}; `{GOLDEN_COMMAND}` writes it"
        in lines
    )
    fixed = cli("prompts", "validate", "--root", library, "--update-golden")
    assert fixed.exit_code == 0, fixed.output
    assert f"golden render added: answer/no_retrieval@1 in {folder}" in fixed.stderr
    assert f"golden render updated: answer/evidence_short@1 in {folder}" in fixed.stderr
    assert json.loads(changed.read_text()) == json.loads(
        golden_file(GOLDEN, "answer/evidence_short@1").read_text()
    )
    assert cli("prompts", "validate", "--root", library).exit_code == 0
    shutil.rmtree(library.parent / "tests")
    nowhere = cli("prompts", "validate", "--root", library, "--update-golden")
    assert nowhere.exit_code == 2 and "pass --golden DIR" in nowhere.stderr


# --------------------------------------------------------------------------- names and K


def test_recall_ks_stop_at_the_retrieval_depth():
    assert recall_ks(5) == (1, 5)
    assert recall_ks(10) == (1, 5, 10)
    assert recall_ks(3) == (1, 3)
    assert recall_ks(0) == ()
    assert recall_ks(150) == (1, 5, 10, 20, 50, 100, 150)


def test_metric_labels():
    assert metric_label("final_score") == "Final score"
    assert metric_label("unseen_question_score.score") == "Unseen question score"
    assert metric_label("unseen_entity_score.score_num") == "Unseen entity score: numerical"
    assert metric_label("by_question_type.2_hop") == "By question type: 2 hop"
    assert metric_label("bem") == "BEM"
    assert metric_label("entity_recall@5") == "Entity recall@5"


# --------------------------------------------------------------------------- help, -v, spinner


def _leaves(command, path=()):
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield path
        return
    for name, sub in subcommands.items():
        yield from _leaves(sub, (*path, name))


def test_help_shows_flags_as_flags_in_every_command():
    leaves = list(_leaves(get_command(app)))
    assert ("bench",) in leaves and ("prompts", "new") in leaves
    for path in [(), *leaves]:
        result = cli(*path, "--help", COLUMNS="160")
        assert result.exit_code == 0, (path, result.output)
        for shown in ("<bool>", "range>", "<list["):
            assert shown not in result.stdout, (path, shown)
    bench = cli("bench", "--help", COLUMNS="160").stdout.splitlines()
    check = next(line for line in bench if "--check" in line)
    assert "<" not in check.split("Exit 1")[0]
    limit = next(line for line in bench if "--limit" in line)
    assert "<int> [x>=1]" in limit
    assert "<str>" in next(line for line in bench if "--set" in line)


def test_verbosity_sets_the_libraries_levels(monkeypatch):
    for var in cli_main.QUIET:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(cli_main, "_USER_SET", frozenset({"TORCH_CPP_LOG_LEVEL"}))
    monkeypatch.setenv("TORCH_CPP_LOG_LEVEL", "INFO")  # the user's own: kept
    vllm_logger = logging.getLogger("vllm")
    try:
        cli_main.set_verbosity(0)
        assert (os.environ["VLLM_LOGGING_LEVEL"], os.environ["TRANSFORMERS_VERBOSITY"]) == (
            "ERROR",
            "error",
        )
        assert os.environ["PYTHONWARNINGS"] == "ignore"
        assert vllm_logger.level == logging.ERROR
        cli_main.set_verbosity(1)
        assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"
        assert "PYTHONWARNINGS" not in os.environ and vllm_logger.level == logging.NOTSET
        cli_main.set_verbosity(5)  # -vvvvv is -vv
        assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
        assert os.environ["TORCH_CPP_LOG_LEVEL"] == "INFO"
    finally:
        vllm_logger.setLevel(logging.NOTSET)


@pytest.mark.engine  # a `ragvqa` process loads the models
def test_library_warnings_hidden_unless_verbose(world, tmp_path):
    """A real `ragvqa` process: loading the retriever's image processor makes transformers log
    (information: with torchvision installed it no longer warns); the logs show only with -vv
    (a retrieval-only run: no reader engine)."""
    script = Path(sys.executable).parent / "ragvqa"
    env = {k: v for k, v in os.environ.items() if k not in cli_main.QUIET}
    args = infoseek_bench(world, "--retrieval-only", "--limit", "2",
                          "--cache", tmp_path / "cache", "--no-cache")  # fmt: skip
    quiet = subprocess.run([script, *args, "--out", tmp_path / "a"], capture_output=True,
                           text=True, env=env, timeout=300)  # fmt: skip
    loud = subprocess.run([script, "-vv", *args, "--out", tmp_path / "b"], capture_output=True,
                          text=True, env=env, timeout=300)  # fmt: skip
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "[transformers]" in loud.stderr and "[transformers]" not in quiet.stderr
    assert quiet.stdout.startswith("metric\tvalue\n")  # the summary alone: logs go to stderr


def test_spinner_draws_on_a_terminal_only():
    """In a pseudo-terminal the spinner shows its label; off a terminal nothing is written."""
    code = (
        "import time\nfrom ragvqa.progress import Spinner\n"
        "with Spinner('starting reader'):\n    time.sleep(0.5)\n"
    )
    rc, seen = read_terminal(code)
    assert rc == 0
    assert b"starting reader..." in seen
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == b"" and piped.stdout == b""


# --------------------------------------------------------------------------- the demo world


def copy_world(world, folder: Path) -> Path:
    shutil.copytree(world["root"], folder, ignore=shutil.ignore_patterns("runs", "cache"))
    return folder


def test_bench_reads_benchmarks_yaml_names_its_run_and_reports_recall_to_depth(
    world, tmp_path, monkeypatch
):
    """No file option: benchmarks.yaml beside the pipeline names them; the run folder is
    named after the pipeline's `name:` (demo); top_k 5: recall@1 and @5 only."""
    demo = copy_world(world, tmp_path / "ragvqa-demo")
    assert (demo / "benchmarks.yaml").is_file()  # the world writes it (python -m ragvqa.fixtures)
    monkeypatch.chdir(tmp_path)
    result = cli("bench", "infoseek", "--pipeline", "ragvqa-demo/pipeline.yaml",
                 "--retrieval-only", "--json", "--cache", "c")  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    recall = metrics["retrieval"]["entity_recall"]
    assert set(recall) == {"recall@1", "recall@5", "judged", "skipped"}
    assert recall["judged"] == 30
    run = Path("runs/infoseek-demo-retrieval")
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert "entity recall@5" in result.stderr and "recall@10" not in result.stderr
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["benchmark"]["files"]["questions"] == "ragvqa-demo/infoseek/questions.jsonl"
    report = cli("report", run)
    assert report.exit_code == 0, report.output
    page = (run / "report.html").read_text()
    assert "<td>Entity recall@5</td>" in page and "recall@10" not in page
    assert "value='1'" in page and "value='0'" not in page  # ranks as the prompt's [1]
    # an entry that names a file the benchmark does not read is refused, naming the file
    (demo / "benchmarks.yaml").write_text("infoseek:\n  answers: x.jsonl\n")
    bad = cli("bench", "infoseek", "--pipeline", "ragvqa-demo/pipeline.yaml", "--retrieval-only")
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (
        "error: ragvqa-demo/benchmarks.yaml: infoseek.answers: not a file of the benchmark"
    )


def test_demo_then_the_commands_it_prints(world, shared_engine, tmp_path, monkeypatch):
    """The quick tour as printed by `ragvqa demo`, pasted as they are (one shared engine)."""
    copy_world(world, tmp_path / "ragvqa-demo")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGVQA_CACHE", str(tmp_path / "cache"))  # not the user's cache
    demo = cli("demo", "ragvqa-demo", "--json")
    assert demo.exit_code == 0, demo.output
    out = json.loads(demo.stdout)
    assert out["answer"]["question"] == "Which city is this tower in?"
    assert set(out["runs"]) == {"infoseek", "evqa"}
    assert set(out["runs"]["evqa"]["retrieval"]["entity_recall"]) == {
        "recall@1", "recall@5", "judged", "skipped"
    }  # fmt: skip
    assert Path("ragvqa-demo/benchmarks.yaml").is_file()
    image = "ragvqa-demo/infoseek/images/00/oven_00000000.jpg"
    commands = next_commands(Path("ragvqa-demo"), Path(image), "Which city is this tower in?")
    lines = demo.stderr.splitlines()
    assert lines[-7:] == ["next, paste these one at a time:", *(f"  {c}" for c in commands)]
    assert commands[1] == (
        "ragvqa bench infoseek --pipeline ragvqa-demo/pipeline.yaml --check --out runs/demo-a"
    )
    for command in commands[:3] + commands[5:]:  # answer, bench twice, evqa --check
        result = runner.invoke(app, shlex.split(command)[1:])
        assert result.exit_code == 0, (command, result.output)
    compare = cli("compare", "runs/demo-a", "runs/demo-b")
    assert compare.exit_code == 0, compare.output
    head = compare.stdout.splitlines()[:2]
    assert head == [
        "A: runs/demo-a  pipeline ragvqa-demo/pipeline.yaml  template answer/evidence_short@1",
        "B: runs/demo-b  pipeline ragvqa-demo/pipeline.yaml  template answer/evidence_fallback@1",
    ]
    assert "predictions changed:" in compare.stdout
    assert cli("report", "runs/demo-b").exit_code == 0
    assert Path("runs/demo-b/report.html").is_file()
