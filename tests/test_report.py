"""`ragvqa report`: the HTML page's content and escaping, the CLI contract, and the page as a real
headless Chromium renders it (screenshot, and the DOM after the filter script has run)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import chromium
from PIL import Image
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.eval.report import is_gold_passage, write_report
from ragvqa.run.records import RunRecord

runner = CliRunner()
SCRIPT_QUESTION = "Is <script>alert(1)</script> & 'this' safe?"
CHROMIUM_TIMEOUT_S = 180  # a hung browser; a loaded 2-core machine took over 60 s once


def _passage(pid: str, entity: str, rank: int, text: str = "some text") -> dict:
    """A retrieved passage as a run record holds it: `rank` 0 is the best (shown as 1)."""
    return {
        "passage_id": pid,
        "page_id": f"page-{entity}",
        "entity_id": entity,
        "title": f"Title {entity}",
        "section": "Intro",
        "score": 1.0 / (rank + 1),
        "rank": rank,
        "text": text,
    }


def _records(tmp_path: Path) -> list[RunRecord]:
    red = tmp_path / "red.png"
    Image.new("RGB", (640, 480), (200, 30, 30)).save(red)
    blue = tmp_path / "blue.png"
    Image.new("RGBA", (100, 300), (30, 30, 200, 255)).save(blue)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    common = {"dataset": "evqa", "template": "evqa-short@1", "model": "tiny-reader"}
    return [
        RunRecord(
            data_id="q1",
            question="What is this flower?",
            image=str(red),
            prediction="rose",
            score=1,
            split="val",
            question_type="templated",
            gold_answers=["rose"],
            gold_entities=["Q1"],
            gold_entity_names=["Rose"],
            gold_rank=1,
            retrieved=[_passage("p9", "Q9", 0), _passage("p1", "Q1", 1, "Rose is a plant")],
            evidence=["p9", "p1"],
            **common,
        ),
        RunRecord(
            data_id="q2",
            question="Where is it?",
            image=str(tmp_path / "missing.png"),
            prediction="Rome",
            score=0,
            split="val",
            question_type="automatic",
            gold_answers=["Paris"],
            gold_entities=["Q2"],
            retrieved=[_passage("p3", "Q3", 0)],
            evidence=["p3"],
            **common,
        ),
        RunRecord(
            data_id="q3",
            question="When was it built?",
            image=str(broken),
            status="failed",
            error="generation timed out",
            split="test",
            question_type="automatic",
            gold_answers=["1889"],
            **common,
        ),
        RunRecord(
            data_id="q4",
            question=SCRIPT_QUESTION,
            image=str(blue),
            prediction="<b>yes</b>",
            score=0,
            split="test",
            question_type="templated",
            gold_answers=["no"],
            gold_entities=["Q4"],
            retrieved=[_passage("p4", "Q4", 0, "<script>alert(2)</script>")],
            **common,
        ),
    ]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps(r.to_json()) for r in _records(tmp_path)]
    (run / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    metrics = {
        "benchmark": "evqa-test-tiny",
        "pipeline": "ret2-tiny",
        "official": {"all": 0.25, "by_question_type": {"templated": 0.5, "automatic": 0.0}},
        "retrieval": {
            "entity_recall": {"recall@1": 0.25, "recall@5": 0.5, "recall@10": 0.5},
            "pseudo_recall": {"recall@1": 0.5, "recall@5": 0.75, "recall@10": 1.0},
        },
        "counts": {"questions": 4, "failed": 1},
        "timings": {"encode": {"seconds": 0.5, "cached": True}, "total": {"seconds": 1.5}},
    }
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run


class _Page(HTMLParser):
    """Collects elements (tag, attrs), script bodies and the text inside each card."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def test_page_content_escaping_and_images(run_dir: Path) -> None:
    out = write_report(run_dir)
    assert out == run_dir / "report.html"
    text = out.read_text(encoding="utf-8")
    page = _parse(text)

    # one script, the page's own; user text is escaped, never a live tag
    assert len(page.scripts) == 1 and "alert" not in page.scripts[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#x27;this&#x27; safe?" in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "<b>yes</b>" not in text and "&lt;b&gt;yes&lt;/b&gt;" in text
    assert "http://" not in text and "https://" not in text  # nothing loaded from outside

    # header: benchmark, pipeline, model, template, official metrics, the recall plot
    for needle in ("evqa-test-tiny", "ret2-tiny", "tiny-reader", "evqa-short@1"):
        assert needle in text
    # official metrics by their names, recall at each K of the run, stage times
    assert "By question type: templated" in text and "by_question_type" not in text
    assert "<td>Entity recall@5</td><td>0.5</td>" in text
    assert "<td>Pseudo recall@10</td><td>1.0</td>" in text
    assert "<td>encode</td><td>0.50 s (cached)</td>" in text
    assert "<td>total</td><td>1.50 s</td>" in text
    (plot,) = [a for a in page.find("img") if a["src"].startswith("data:image/png;base64,")]
    assert Image.open(io.BytesIO(base64.b64decode(plot["src"].split(",", 1)[1]))).format == "PNG"

    # cards: outcome, split and type for the filters
    cards = {a["data-id"]: a for t, a in page.elements if t == "div" and "data-id" in a}
    assert {k: v["data-outcome"] for k, v in cards.items()} == {
        "q1": "correct",
        "q2": "wrong",
        "q3": "failed",
        "q4": "wrong",
    }
    assert cards["q3"]["data-split"] == "test" and cards["q1"]["data-qtype"] == "templated"

    # ranks are 1-based, as the prompt's [1], [2]: q1's gold passage is the second
    assert [a["value"] for a in page.find("li") if a.get("data-passage") in ("p9", "p1")] == [
        "1",
        "2",
    ]
    assert "first gold passage at rank 2" in text

    # the gold entity's passage is marked, and so are the ones the reader saw
    assert page.find("li", **{"data-passage": "p1"})[0]["class"] == "gold seen"
    assert page.find("li", **{"data-passage": "p9"})[0]["class"] == "seen"
    assert page.find("li", **{"data-passage": "p3"})[0]["class"] == "seen"
    assert page.find("li", **{"data-passage": "p4"})[0]["class"] == "gold"

    # images: downscaled JPEG data URIs; missing and unreadable ones are placeholders
    jpegs = [a["src"] for a in page.find("img") if a["src"].startswith("data:image/jpeg;base64,")]
    assert len(jpegs) == 2
    sizes = [Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))).size for s in jpegs]
    assert sizes == [(256, 192), (85, 256)]
    assert "image not found" in text and "image unreadable" in text


def test_gold_passage_rule() -> None:
    assert is_gold_passage({"passage_id": "x", "page_id": "P", "entity_id": "E"}, ["E"])
    assert is_gold_passage({"passage_id": "x", "page_id": "P", "entity_id": None}, ["P"])
    assert is_gold_passage({"passage_id": "x"}, ["x"])
    assert not is_gold_passage({"passage_id": "x", "page_id": "P", "entity_id": "E"}, ["Q"])


def test_cli_writes_report_and_limits(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.html"
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(out), "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.stderr.replace("\n", "")
    page = _parse(out.read_text(encoding="utf-8"))
    assert [a["data-id"] for t, a in page.elements if t == "div" and "data-id" in a] == [
        "q1",
        "q2",
    ]
    assert "first 2 of 4" in out.read_text(encoding="utf-8")

    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").is_file()

    # error analysis: only the wrong answers (q2 and q4), counted among the wrong ones
    wrong = tmp_path / "wrong.html"
    result = runner.invoke(app, ["report", str(run_dir), "--out", str(wrong), "--only", "wrong"])
    assert result.exit_code == 0, result.output
    page = _parse(wrong.read_text(encoding="utf-8"))
    ids = [a["data-id"] for t, a in page.elements if t == "div" and "data-id" in a]
    assert ids == ["q2", "q4"]
    result = runner.invoke(app, ["report", str(run_dir), "--only", "rong"])
    assert result.exit_code == 2 and "--only must be one of" in result.stderr


def test_cli_errors_are_one_line(tmp_path: Path, run_dir: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error:") and "not a finished run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    result = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "no" / "r.html")])
    assert result.exit_code == 2
    assert "output folder does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    (run_dir / "metrics.json").write_text("{", encoding="utf-8")
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 2 and "malformed JSON" in result.stderr
    assert not (run_dir / "report.html").exists()


# --- a real browser ---------------------------------------------------------------------------


def _run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return result


def _shown(dom: str) -> dict[str, bool]:
    page = _parse(dom)
    return {a["data-id"]: "hidden" not in a for t, a in page.elements if "data-id" in a}


@pytest.mark.engine  # a real headless browser
def test_chromium_renders_and_filters(run_dir: Path, tmp_path: Path) -> None:
    url = write_report(run_dir).resolve().as_uri()
    started = time.monotonic()

    shot = tmp_path / "shot.png"  # kept in tmp_path for a look when the test fails
    _run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", url)
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as img:
        assert img.size == (1200, 2000)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 24)
    assert colours is not None and len(colours) > 1, "the screenshot is blank"

    result = _run_chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", url)
    # the page's CSP must allow its own script, style and data: images (and nothing else)
    assert "Content Security Policy" not in result.stderr, result.stderr[-2000:]
    dom = result.stdout
    assert 'data-filters="ready"' in dom, "the filter script did not run"
    assert "4 of 4 questions shown" in dom
    assert _shown(dom) == {"q1": True, "q2": True, "q3": True, "q4": True}
    assert "<script>alert" not in dom  # still escaped text after parsing and scripting

    dom = _run_chromium(tmp_path, "--dump-dom", url + "#correct=wrong").stdout
    assert "2 of 4 questions shown" in dom
    assert _shown(dom) == {"q1": False, "q2": True, "q3": False, "q4": True}

    dom = _run_chromium(tmp_path, "--dump-dom", url + "#split=test&type=templated").stdout
    assert "1 of 4 questions shown" in dom
    assert _shown(dom) == {"q1": False, "q2": False, "q3": False, "q4": True}

    elapsed = time.monotonic() - started
    print(f"chromium: 4 runs in {elapsed:.1f} s")
