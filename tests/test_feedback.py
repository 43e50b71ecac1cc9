"""Waiting with word (issue 23): progress in a log, start-up apart from the stages.

- `ProgressBar` off a terminal writes a plain line (label, done/total, rate, time left) every
  interval and one at the end, and nothing more often; on a terminal it draws the rich bar,
  and a bar inside a spinner hides the spinner until it is done.
- Start-up (loading the components: the reader's engine above all) is its own figure:
  `with_startup` takes it out of the stage that waited for it, `bench`'s table, metrics.json
  and the HTML report show it on its own line, and `ragvqa answer` shows a spinner while the
  models load and a start-up line in its panel.

None of these starts an engine: the reader is a scripted one that takes its time to "start".
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import time

import pytest
from typer.testing import CliRunner

from ragvqa import components
from ragvqa.cli.bench import summary
from ragvqa.cli.main import app
from ragvqa.eval.report import write_report
from ragvqa.pipeline import Pipeline
from ragvqa.progress import ProgressBar
from ragvqa.registry import GENERATORS
from ragvqa.run.runner import BenchRunner, BenchSpec
from ragvqa.startup import StageClock, StartupLog, with_startup
from ragvqa.types import Generation

START = 1.0  # seconds the scripted reader takes to "start"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def unfold(text: str) -> str:
    """A drawn panel's text on one line: escape codes, borders and folds gone."""
    return " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|│", " ", text).split())


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# ---------------------------------------------------------------------- progress in a log


def test_progress_off_a_terminal_is_a_plain_line_per_interval_and_one_at_the_end(capsys):
    clock = FakeClock()
    with ProgressBar("encoding passages", total=100, interval=30, clock=clock) as bar:
        assert not bar.shown and bar.logged  # pytest's stderr is no terminal
        for now in (10, 20, 29.9):  # within the first interval: nothing
            clock.now = now
            bar.advance(10)
        assert capsys.readouterr().err == ""
        clock.now = 30
        bar.advance(10)  # 40 done in 30 s
        for now in (31, 45, 59.9):  # nothing more often than the interval
            clock.now = now
            bar.advance(5)
        clock.now = 60
        bar.update(completed=70, info="loss 0.31")
        clock.now = 75
        bar.advance(30)
    assert lines(capsys.readouterr().err) == [
        "encoding passages: 40/100 (40.0%), 1.3/s, 45s left",
        "encoding passages: 70/100 (70.0%), 1.2/s, 26s left, loss 0.31",
        "encoding passages: 100/100 (100.0%), 1.3/s, done in 1m15s, loss 0.31",
    ]


def test_progress_off_a_terminal_formats_and_silences(capsys):
    clock = FakeClock()
    # a resumed job: the units done before it are not in its rate
    with ProgressBar("training", total=1000, completed=400, interval=30, clock=clock) as bar:
        clock.now = 60
        bar.advance(120)
    # a download: sizes and speed; a stream: no total, no time left
    with ProgressBar("wiki.json", total=10_000_000, transfer=True, interval=30, clock=clock) as bar:
        clock.now = 100
        bar.advance(4_000_000)
    with ProgressBar("kb build", interval=30, clock=clock) as bar:
        clock.now = 140
        bar.advance(1236)
    assert lines(capsys.readouterr().err) == [
        "training: 520/1000 (52.0%), 2.0/s, 4m00s left",
        "training: 520/1000 (52.0%), 2.0/s, done in 1m00s",
        "wiki.json: 4.0 MB/10.0 MB (40.0%), 100.0 kB/s, 1m00s left",
        "wiki.json: 4.0 MB/10.0 MB (40.0%), 100.0 kB/s, done in 40s",
        "kb build: 1236 done, 30.9/s",
        "kb build: 1236 done, 30.9/s, done in 40s",
    ]
    # a job that fails says where it stopped
    with (
        pytest.raises(KeyboardInterrupt),
        ProgressBar("index build", 10, interval=30, clock=clock) as bar,
    ):
        clock.now += 45
        bar.advance(3)
        raise KeyboardInterrupt
    assert lines(capsys.readouterr().err) == [
        "index build: 3/10 (30.0%), 0.1/s, 1m45s left",
        "index build: 3/10 (30.0%), 0.1/s, stopped after 45s",
    ]
    # a short job, a disabled bar, a single step: nothing at all
    for kwargs in ({"total": 5}, {"total": 5, "enabled": False}, {"total": 1, "enabled": None}):
        with ProgressBar("short", interval=30, clock=clock, **kwargs) as bar:
            clock.now += 10
            bar.advance(5)
    with ProgressBar("off", total=5, enabled=False, interval=30, clock=clock) as bar:
        clock.now += 100
        bar.advance(5)
    assert capsys.readouterr().err == ""


def read_terminal(code: str) -> tuple[int, bytes]:
    """Run `code` in a Python whose stdout and stderr are a pseudo-terminal; what it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=slave, stdout=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    rc = proc.wait(timeout=240)
    os.close(master)
    return rc, seen


def test_on_a_terminal_the_bar_is_drawn_inside_a_spinner_and_no_line_is_written():
    """A bar that starts while a spinner turns (an index built while `answer` starts up) hides
    the spinner and draws itself; the spinner comes back after it; no plain line, no error."""
    code = (
        "import time\nfrom ragvqa.progress import ProgressBar, Spinner\n"
        "with Spinner('starting reader'):\n"
        "    time.sleep(1.2)\n"
        "    with ProgressBar('encoding passages', 3, interval=0) as bar:\n"
        "        for _ in range(3):\n"
        "            time.sleep(0.2)\n"
        "            bar.advance()\n"
        "    time.sleep(0.4)\n"
        "print('finished')\n"
    )
    rc, seen = read_terminal(code)
    assert rc == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    bar_at = text.index("encoding passages")
    assert "starting reader..." in text[:bar_at]  # the spinner, then the bar
    assert "starting reader..." in text[bar_at:]  # and the spinner again
    assert "1s" in text  # the seconds waited so far
    assert "3/3" in text and "left" not in text and "done in" not in text  # rich, no lines
    assert "finished" in text
    # in a log the same bar (interval 0) writes plain lines, the spinner nothing
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert piped.returncode == 0
    written = piped.stderr.decode().splitlines()
    assert written[0].startswith("encoding passages: 1/3 (33.3%), ")
    assert written[-1].startswith("encoding passages: 3/3 (100.0%), ") and "done in" in written[-1]
    assert all(line.startswith("encoding passages: ") for line in written)
    assert "\x1b" not in piped.stderr.decode()  # no escape codes in a log


# ---------------------------------------------------------------------- start-up apart


def span_in_thread(log: StartupLog, name: str, start: float, end: float) -> None:
    thread = threading.Thread(target=log.record, args=(name, start, end), name="ragvqa-reader")
    thread.start()
    thread.join()


def test_with_startup_takes_loading_out_of_the_stage_that_waited_for_it():
    log = StartupLog()
    log.record("before_load", 0.0, 4.0)  # before the run: costs it nothing
    log.record("encoder", 11.0, 13.0)  # loaded inside the encode stage
    log.record("kb", 16.0, 16.5)  # the oracle's gold passages: between two stages
    log.record("reader", 20.0, 65.0)  # started in the generate stage, this thread
    timings = StageClock()
    for stage, seconds, end in (("encode", 4.0, 14.0), ("search", 1.0, 15.0),
                                ("generate", 47.0, 67.0)):  # fmt: skip
        timings[stage] = {"seconds": seconds, "cached": False}
        timings.ends[stage] = end
    timings["total"] = {"seconds": 58.0}
    timings.ends["total"] = 68.0
    out = with_startup(timings, log)
    assert list(out) == ["startup", "encode", "search", "generate", "total"]
    assert out["startup"] == {
        "seconds": 47.5,
        "components": {"encoder": 2.0, "kb": 0.5, "reader": 45.0},
    }
    assert out["encode"] == {"seconds": 2.0, "cached": False}
    assert out["search"] == {"seconds": 1.0, "cached": False}
    assert out["generate"] == {"seconds": 2.0, "cached": False}  # never the engine's start
    assert out["total"] == {"seconds": 58.0}

    # started in the background while retrieving (a cold `answer`): only the wait counts
    log = StartupLog()
    log.record("encoder", 2.0, 5.0)
    span_in_thread(log, "reader", 1.0, 30.0)
    timings = StageClock()
    for stage, seconds, end in (("encode", 4.0, 6.0), ("generate", 25.0, 31.0)):
        timings[stage] = {"seconds": seconds, "cached": False}
        timings.ends[stage] = end
    out = with_startup(timings, log, since=0.0, until=32.0)
    assert out["startup"] == {"seconds": 27.0, "components": {"encoder": 3.0, "reader": 24.0}}
    assert out["encode"]["seconds"] == 1.0 and out["generate"]["seconds"] == 1.0
    # plain timings (no windows) are left as they are
    assert with_startup({"encode": {"seconds": 1.0}}, log) == {"encode": {"seconds": 1.0}}


class SlowToStart:
    """A scripted reader: its construction takes START seconds (as an engine's start does)."""

    def __init__(self) -> None:
        time.sleep(START)

    def generate(self, prompts, sampling):
        return [Generation("Paris", "scripted") for _ in prompts]

    def close(self) -> None:
        pass


@pytest.fixture
def slow_reader(monkeypatch):
    """The world's vLLM reader built as `SlowToStart`: inside the pipeline's start-up span."""
    real = components.build

    def build(registry, spec, **kwargs):
        return SlowToStart() if registry is GENERATORS else real(registry, spec, **kwargs)

    monkeypatch.setattr(components, "build", build)
    monkeypatch.setattr(GENERATORS.get("vllm"), "preload", staticmethod(lambda: None))


def infoseek_spec(world, **kw) -> BenchSpec:
    files = {
        "questions": str(world["infoseek_questions"]),
        "qtypes": str(world["infoseek_qtypes"]),
        "withkb": str(world["infoseek_withkb"]),
    }
    return BenchSpec("infoseek", files, images={"oven": str(world["infoseek_images"])}, **kw)


def test_bench_gives_startup_its_own_line_in_metrics_table_and_report(
    world, tmp_path, slow_reader, capsys
):
    from ragvqa.benchmarks import get_benchmark

    out = tmp_path / "run"
    with Pipeline.load(world["pipeline"]) as pipe:
        metrics = BenchRunner(
            pipe, infoseek_spec(world, limit=4), out, cache=tmp_path / "cache", progress=False
        ).run()
    timings = metrics["timings"]
    assert list(timings)[0] == "startup" and list(timings)[-1] == "total"
    startup = timings["startup"]
    assert set(startup["components"]) >= {"encoder", "reader"}  # kb, index: ms, often 0
    assert startup["components"]["reader"] >= START
    assert timings["generate"]["seconds"] < START / 2  # the reader's start is not generation
    stages = sum(t["seconds"] for k, t in timings.items() if k not in ("startup", "total"))
    assert startup["seconds"] + stages <= timings["total"]["seconds"] + 0.05
    assert json.loads((out / "metrics.json").read_text())["timings"] == timings

    capsys.readouterr()
    summary(get_benchmark("infoseek"), metrics, out)
    table = capsys.readouterr().out
    rows = table.splitlines()
    startup_at = next(i for i, line in enumerate(rows) if "time start-up" in line)
    assert f"{startup['seconds']:.2f} s" in rows[startup_at]
    reader_row = next(line for line in rows[startup_at:] if "  reader" in line)  # under it
    assert f"{startup['components']['reader']:.2f} s" in reader_row
    generate_row = next(line for line in table.splitlines() if "time generate" in line)
    assert f"{timings['generate']['seconds']:.2f} s" in generate_row

    page = write_report(out).read_text()
    assert "<td>start-up</td>" in page and f"{startup['seconds']:.2f} s" in page
    assert "reader " in page.split("<td>start-up</td>")[1].split("</tr>")[0]


def test_answer_json_and_panel_keep_startup_apart(world, slow_reader):
    """In-process: the reader starts in the background while the encoder loads and searches;
    the record's `timings` hold `startup`, and `generate` is generation alone."""
    image = sorted(world["infoseek_images"].rglob("*.jpg"))[0]
    args = ["answer", "--image", str(image), "--question", "Where is this tower?",
            "--pipeline", str(world["pipeline"])]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["answer"] == "Paris"
    assert list(record["timings"]) == ["startup", "encode", "search", "generate"]
    assert record["startup"]["reader"]["thread"] == "ragvqa-reader"
    assert record["startup"]["reader"]["seconds"] >= START
    assert record["timings"]["generate"] < START / 2
    assert record["timings"]["startup"] >= record["startup"]["encoder"]["seconds"]

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    panel = unfold(result.stdout)
    assert "start-up " in panel and "(in the background)" in panel
    assert "reader " in panel and "encoder " in panel and "generate " in panel


@pytest.mark.engine  # a model-loading `ragvqa` process (the retriever; the reader is scripted)
def test_answer_on_a_terminal_shows_a_spinner_while_starting_up(world):
    """A `ragvqa answer` process on a terminal (its reader slow to start, no engine): the
    spinner says what is going on, then the panel has its start-up line."""
    image = sorted(world["infoseek_images"].rglob("*.jpg"))[0]
    code = (
        "import sys, time\n"
        "from ragvqa import components\n"
        "from ragvqa.registry import GENERATORS\n"
        "from ragvqa.types import Generation\n"
        "class Slow:\n"
        f"    def __init__(self): time.sleep({START * 3})\n"
        "    def generate(self, prompts, sampling):\n"
        "        return [Generation('Paris', 'scripted') for _ in prompts]\n"
        "real = components.build\n"
        "components.build = lambda r, s, **k: Slow() if r is GENERATORS else real(r, s, **k)\n"
        "GENERATORS.get('vllm').preload = staticmethod(lambda: None)\n"
        "from ragvqa.cli.main import app\n"
        f"sys.argv = ['ragvqa', 'answer', '--image', {str(image)!r}, '--question', 'Where?',\n"
        f"            '--pipeline', {str(world['pipeline'])!r}]\n"
        "app()\n"
    )
    rc, seen = read_terminal(code)
    text = seen.decode(errors="replace")
    assert rc == 0, text[-3000:]
    assert "retrieving while the reader starts..." in text, text[-3000:]
    panel = unfold(text)
    assert "start-up " in panel and "(in the background)" in panel and "Paris" in panel
