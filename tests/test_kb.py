"""Knowledge bases: streaming readers, chunking, the Arrow store, resumable builds, the CLI."""

from __future__ import annotations

import gzip
import io
import json
import zipfile

import pytest
from PIL import Image
from typer.testing import CliRunner

import ragvqa.kb.build as kb_build
import ragvqa.kb.jsonstream as jsonstream
from ragvqa.cli.main import app
from ragvqa.errors import UserError
from ragvqa.kb.build import BuildParams, build_kb
from ragvqa.kb.chunking import display_title, windows
from ragvqa.kb.store import KBStore

EVQA_KB = {
    "https://en.wikipedia.org/wiki/Menai_Suspension_Bridge": {
        "title": "Menai Suspension Bridge",
        "section_titles": ["Menai Suspension Bridge", "History", "Empty"],
        "section_texts": ["A bridge in Wales.", "Opened in 1826.", "  "],
        "image_urls": [
            "https://upload.wikimedia.org/a/Bridge.jpg",
            "https://upload.wikimedia.org/b/Gone.jpg",
        ],
        "image_section_indices": [1, 0],
        "image_reference_descriptions": ["", ""],
        "url": "https://en.wikipedia.org/wiki/Menai_Suspension_Bridge",
    },
    "https://en.wikipedia.org/wiki/Broken": {"title": "Broken", "section_titles": "oops"},
    "https://en.wikipedia.org/wiki/Impala": {
        "title": "Impala",
        "section_titles": ["Impala"],
        "section_texts": ["An antelope."],
        "image_urls": [],
        "image_section_indices": [],
    },
}


def test_json_stream_survives_any_chunk_boundary(monkeypatch):
    monkeypatch.setattr(jsonstream, "CHUNK", 3)
    text = json.dumps({"a": {"x": [1, 2.5e3, "é"]}, "b": 12345, "c": "}{"})
    assert list(jsonstream.iter_object_items(io.StringIO(text))) == [
        ("a", {"x": [1, 2500.0, "é"]}),
        ("b", 12345),
        ("c", "}{"),
    ]
    with pytest.raises(jsonstream.JSONStreamError, match="found end of file"):
        list(jsonstream.iter_object_items(io.StringIO('{"a": 1')))


def test_windows_pack_whole_sentences():
    text = "One two three. Four five. Six seven eight nine ten eleven. Twelve."
    # 3 + 2 words fit a window of 5; the 6-word sentence is cut at the window
    assert windows(text, 5) == [
        "One two three. Four five.",
        "Six seven eight nine ten",
        "eleven. Twelve.",
    ]
    assert windows("", 5) == []


@pytest.fixture
def evqa_kb(tmp_path):
    path = tmp_path / "encyclopedic_kb_wiki.json"
    path.write_text(json.dumps(EVQA_KB), encoding="utf-8")
    images = tmp_path / "kb_images"
    images.mkdir()
    Image.new("RGB", (4, 4)).save(images / "Bridge.jpg")
    return path, images


def test_evqa_section_passages_with_images(evqa_kb, tmp_path):
    path, images = evqa_kb
    manifest = build_kb(
        BuildParams("evqa", str(path), images_dir=str(images)), tmp_path / "kb", progress=False
    )
    assert (manifest["pages"], manifest["passages"], manifest["skipped_entries"]) == (2, 3, 1)
    assert (manifest["images"], manifest["missing_images"], manifest["image_urls"]) == (1, 1, 2)
    assert manifest["skipped_examples"][0]["id"] == "https://en.wikipedia.org/wiki/Broken"
    store = KBStore(tmp_path / "kb")
    p = store.passages([0, 1, 2])
    url = "https://en.wikipedia.org/wiki/Menai_Suspension_Bridge"
    assert [x.passage_id for x in p] == [
        f"{url}#0",
        f"{url}#1",
        "https://en.wikipedia.org/wiki/Impala#0",
    ]
    assert [display_title(x) for x in p] == [
        "Menai Suspension Bridge",
        "Menai Suspension Bridge / History",
        "Impala",
    ]
    assert p[1].text == "Opened in 1826." and p[1].image_paths == (str(images / "Bridge.jpg"),)
    assert p[0].image_paths == ()  # its image has no pixels: counted as missing
    assert store.row_of("https://en.wikipedia.org/wiki/Impala#0") == 2


def test_evqa_from_zip_equals_plain(evqa_kb, tmp_path):
    path, _ = evqa_kb
    archive = tmp_path / "encyclopedic_kb_wiki.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(path, "encyclopedic_kb_wiki.json")
    a = build_kb(BuildParams("evqa", str(path)), tmp_path / "a", progress=False)
    b = build_kb(BuildParams("evqa", str(archive)), tmp_path / "b", progress=False)
    assert KBStore(tmp_path / "a").passages([0, 1, 2]) == KBStore(tmp_path / "b").passages(
        [0, 1, 2]
    )
    assert a["passages"] == b["passages"] == 3


def test_wiki6m_gz_token_chunking(tmp_path):
    path = tmp_path / "Wiki6M_ver_1_0.jsonl.gz"
    rows = [
        {
            "wikidata_id": "Q1",
            "wikipedia_title": "A",
            "wikipedia_content": "w1 w2 w3. w4 w5.",
            "wikipedia_image_url": "",
            "wikipedia_summary": "",
        },
        {"wikidata_id": "Q2", "wikipedia_title": "B"},
        "not an object",
    ]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
    manifest = build_kb(
        BuildParams("wiki6m", str(path), chunking="tokens", max_tokens=3),
        tmp_path / "kb",
        progress=False,
    )
    assert (manifest["pages"], manifest["passages"], manifest["skipped_entries"]) == (1, 2, 3)
    passages = KBStore(tmp_path / "kb").passages([0, 1])
    assert [p.text for p in passages] == ["w1 w2 w3.", "w4 w5."]
    assert passages[0].entity_id == "Q1" and passages[1].passage_id == "Q1#1"


def test_ret_m2kr_relative_images(tmp_path):
    (tmp_path / "img" / "kb").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "img" / "kb" / "p1.jpg")
    path = tmp_path / "kb_infoseek50k.jsonl"
    path.write_text(
        json.dumps({"passage_id": "p1", "passage_text": "t1", "passage_image_path": "kb/p1.jpg"})
        + "\n"
        + json.dumps({"passage_id": 2, "passage_text": "t2", "passage_image_path": "kb/p2.jpg"})
        + "\n"
    )
    manifest = build_kb(
        BuildParams("ret-m2kr", str(path), images_dir=str(tmp_path / "img")),
        tmp_path / "kb",
        progress=False,
    )
    assert (manifest["passages"], manifest["images"], manifest["missing_images"]) == (2, 1, 1)
    assert KBStore(tmp_path / "kb").passage(0).image_paths == (str(tmp_path / "img/kb/p1.jpg"),)


def test_m2kr_passages_from_local_hub_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "M2KR" / "Infoseek_passages").mkdir(parents=True)
    table = pa.table({"passage_id": ["a", "b"], "passage_content": ["x", "y"], "title": ["A", "B"]})
    pq.write_table(table, tmp_path / "M2KR" / "Infoseek_passages" / "test_passages-0.parquet")
    params = BuildParams(
        "m2kr", str(tmp_path / "M2KR"), subset="Infoseek_passages", split="test_passages"
    )
    assert build_kb(params, tmp_path / "kb", progress=False)["passages"] == 2
    assert KBStore(tmp_path / "kb").passage(1).title == "B"


def test_killed_build_resumes_without_loss_or_duplicates(evqa_kb, tmp_path, monkeypatch):
    path, _ = evqa_kb
    params = BuildParams("evqa", str(path), shard_pages=1)
    clean = build_kb(params, tmp_path / "clean", progress=False)
    real_write = kb_build.write_shard
    calls = {"n": 0}

    def dies_on_second_shard(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the process is killed while writing shard 2
        return real_write(*args)

    monkeypatch.setattr(kb_build, "write_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        build_kb(params, tmp_path / "kb", progress=False)
    with pytest.raises(UserError, match="KB build not finished"):
        KBStore(tmp_path / "kb")
    monkeypatch.setattr(kb_build, "write_shard", real_write)
    resumed = build_kb(params, tmp_path / "kb", progress=False)
    assert resumed["fingerprint"] == clean["fingerprint"]
    assert resumed["passages"] == 3 and resumed["skipped_entries"] == 1
    a, b = KBStore(tmp_path / "clean"), KBStore(tmp_path / "kb")
    assert a.passages(range(3)) == b.passages(range(3))
    with pytest.raises(UserError, match="another input or with other settings"):
        build_kb(BuildParams("evqa", str(path), shard_pages=5), tmp_path / "kb", progress=False)


def test_store_refuses_missing_shard(evqa_kb, tmp_path):
    path, _ = evqa_kb
    manifest = build_kb(BuildParams("evqa", str(path)), tmp_path / "kb", progress=False)
    (tmp_path / "kb" / "passages" / manifest["shards"][0]["file"]).unlink()
    with pytest.raises(UserError, match="KB shard is missing"):
        KBStore(tmp_path / "kb").passage(0)


def test_cli_build_and_info(evqa_kb, tmp_path):
    path, images = evqa_kb
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "kb",
            "build",
            "--format",
            "evqa",
            "--input",
            str(path),
            "--out",
            str(tmp_path / "kb"),
            "--images-dir",
            str(images),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 pages -> 3 passages, 1 entries skipped" in result.stderr
    info = runner.invoke(app, ["kb", "info", str(tmp_path / "kb"), "--json"])
    data = json.loads(info.stdout)
    assert {
        k: data[k] for k in ("pages", "passages", "images", "missing_images", "skipped_entries")
    } == {"pages": 2, "passages": 3, "images": 1, "missing_images": 1, "skipped_entries": 1}


def test_cli_bad_inputs(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "kb.json"
    bad.write_text("[1, 2]")
    result = runner.invoke(
        app,
        [
            "kb",
            "build",
            "--format",
            "evqa",
            "--input",
            str(bad),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {bad}: not an E-VQA KB JSON object (expected one of '{{', found '[')"
    )
    result = runner.invoke(
        app,
        ["kb", "build", "--format", "evqaa", "--input", str(bad), "--out", str(tmp_path / "o2")],
    )
    assert result.exit_code == 2 and "did you mean 'evqa'" in result.stderr
    result = runner.invoke(app, ["kb", "info", str(tmp_path)])
    assert result.exit_code == 2 and "kb.json is not a ragvqa KB manifest" in result.stderr
    result = runner.invoke(app, ["kb", "info", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a KB folder" in result.stderr


WIKI_LEADS = {
    "Eiffel Tower": {"title": "Eiffel Tower", "extract": "The Eiffel Tower is a tower in Paris."},
    "Mona Lisa": {
        "title": "Mona Lisa",
        "extract": "The Mona Lisa is a portrait. It hangs in Paris.",
    },
    "Empty": {"title": "Empty", "extract": "  "},
    "Broken": ["not", "an", "object"],
}


def test_wiki_leads_one_passage_per_title(tmp_path):
    path = tmp_path / "summaries_en-us.json"
    path.write_text(json.dumps(WIKI_LEADS), encoding="utf-8")
    manifest = build_kb(BuildParams("wiki-leads", str(path)), tmp_path / "kb", progress=False)
    assert (manifest["pages"], manifest["passages"], manifest["skipped_entries"]) == (2, 2, 2)
    assert manifest["images"] == 0
    first, second = KBStore(tmp_path / "kb").passages([0, 1])
    assert (first.passage_id, first.title, first.page_id, first.entity_id) == (
        "Eiffel Tower#0",
        "Eiffel Tower",
        "Eiffel Tower",
        "Eiffel Tower",
    )
    assert second.text == "The Mona Lisa is a portrait. It hangs in Paris."  # the whole lead
    assert (second.section_title, second.image_paths, display_title(second)) == (
        "",
        (),
        "Mona Lisa",
    )
    windowed = build_kb(
        BuildParams("wiki-leads", str(path), chunking="tokens", max_tokens=6),
        tmp_path / "kb6",
        progress=False,
    )
    assert windowed["passages"] == 4  # leads longer than the window are split (2 + 2)


def test_cli_builds_wiki_leads(tmp_path):
    path = tmp_path / "summaries_en-us.json"
    path.write_text(json.dumps(WIKI_LEADS), encoding="utf-8")
    args = ["kb", "build", "--format", "wiki-leads", "--input", str(path)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "kb"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "2 pages -> 2 passages, 2 entries skipped" in result.stderr
    path.write_text("[1]")
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "kb2"), "--no-progress"])
    assert result.exit_code == 2
    assert "not a wiki-leads JSON object" in result.stderr
