"""Issue 22: a resumed run reuses only what was produced from the same inputs, and no command
writes over or into a run's inputs.

- An edited question (modes none and oracle, and index when the edit falls past the encoder's 77
  tokens so that retrieval does not change) is read again: new prompt, new answer; only its
  reader batch is generated again.
- An image replaced in place (same size and mtime) is encoded again, and is another prompt for a
  reader that sees images.
- Reader weights retrained in place (same size and mtime) are read again; the reader's, the
  cross-encoder's and a hub model's identities are in their keys.
- `ragvqa report --out` is refused over the run's questions file, an image, the pipeline file,
  or inside an image, KB or index folder (also for a run recorded before `inputs`);
  `bench --out` inside an input folder too; `report --json` says where and how many.

Every run here reads with the world's tiny Llama through transformers (no vLLM engine).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.errors import UserError
from ragvqa.pipeline import Pipeline
from ragvqa.run.records import read_records
from ragvqa.run.runner import BenchRunner, BenchSpec

cli = CliRunner()
LONG = " ".join(["the old stone tower that stands near the river"] * 12)  # past 77 tokens


@pytest.fixture(scope="module")
def setup(world, tmp_path_factory):
    """The world's pipeline with a transformers reader (a copy of the world's tiny Llama), the
    InfoSeek files and images copied (tests edit them), and one finished 4-question run."""
    root = tmp_path_factory.mktemp("resume")
    base = world["root"]
    shutil.copytree(base / "infoseek", root / "infoseek")
    shutil.copytree(base / "models" / "reader", root / "reader")
    config = yaml.safe_load(world["pipeline"].read_text())
    for section in ("encoder",):
        config[section]["model"] = str(base / config[section]["model"])
    for section in ("kb", "index"):
        config[section]["path"] = str(base / config[section]["path"])
    config["reader"]["generator"] = {
        "type": "transformers",
        "model": str(root / "reader"),
        "device": "cpu",
    }
    pipeline = root / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(config, sort_keys=False))
    ns = SimpleNamespace(
        root=root,
        pipeline=pipeline,
        config=config,
        kb=Path(config["kb"]["path"]),
        index=Path(config["index"]["path"]),
        questions=root / "infoseek" / "questions.jsonl",
        qtypes=root / "infoseek" / "qtypes.jsonl",
        withkb=root / "infoseek" / "withkb.jsonl",
        images=root / "infoseek" / "images",
        cache=root / "cache",
        run=root / "run",
    )
    bench(ns, ns.run)
    return ns


def bench(setup, out, *overrides, questions=None, images=None, cache=None, limit=4):
    """One run of `limit` questions in reader batches of 2; (metrics, records by data_id)."""
    files = {
        "questions": str(questions or setup.questions),
        "qtypes": str(setup.qtypes),
        "withkb": str(setup.withkb),
    }
    spec = BenchSpec("infoseek", files, images={"oven": str(images or setup.images)}, limit=limit)
    with Pipeline.load(setup.pipeline, ["reader.batch_size=2", *overrides]) as pipe:
        runner = BenchRunner(pipe, spec, out, cache=cache or setup.cache, progress=False)
        metrics = runner.run()
    return metrics, {r.data_id: r for r in read_records(out)}


def journal_lines(out: Path) -> int:
    return len((out / "work" / "answers.jsonl").read_text(encoding="utf-8").splitlines())


def prompt_text(record) -> str:
    return json.dumps(record.prompt, ensure_ascii=False)


def rewrite(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


# --- 1. edited inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "oracle", "index"])
def test_an_edited_question_is_read_again_on_resume(setup, tmp_path, mode):
    """The issue: after the questions file was edited, the resumed run said "generate 0.00 s
    (cached)" and its records showed the new question with the old prompt and answer."""
    questions = tmp_path / "questions.jsonl"
    rows = [json.loads(x) for x in setup.questions.read_text().splitlines()]
    overrides = [f"retrieval.mode={mode}"]
    if mode == "none":
        overrides.append("reader.prompt=answer/no_retrieval@1")
    if mode == "index":  # an edit past the encoder's 77 tokens: retrieval does not change
        rows[0]["question"] = f"{LONG} Which city is this tower in?"
    old = rows[0]["question"]
    rewrite(questions, rows)
    out = tmp_path / "run"
    _, first = bench(setup, out, *overrides, questions=questions)
    assert journal_lines(out) == 4
    ids = list(first)

    new = f"{LONG} When was it built?" if mode == "index" else "Which river flows past it?"
    rows[0]["question"] = new
    rewrite(questions, rows)
    metrics, second = bench(setup, out, *overrides, questions=questions)
    edited = second[ids[0]]
    assert edited.question == new
    assert not metrics["timings"]["generate"]["cached"]
    assert new[-20:] in prompt_text(edited) and old[-20:] not in prompt_text(edited)
    if mode == "index":
        assert [p["passage_id"] for p in edited.retrieved] == [
            p["passage_id"] for p in first[ids[0]].retrieved
        ]
    # only the edited question's batch was generated again; the other batch is reused
    assert journal_lines(out) == 6
    for qid in ids[2:]:
        assert second[qid].prompt == first[qid].prompt
        assert second[qid].raw_output == first[qid].raw_output

    metrics, third = bench(setup, out, *overrides, questions=questions)
    assert metrics["timings"]["generate"]["cached"] and journal_lines(out) == 6
    assert {k: (r.prompt, r.raw_output) for k, r in third.items()} == {
        k: (r.prompt, r.raw_output) for k, r in second.items()
    }


def same_size_other_bytes(path: Path) -> None:
    """Change a JPEG's bytes in place (its JFIF density: the pixels stay decodable), keeping
    its size and mtime, as `cp -p` or a restore from a backup can."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    assert data[6:10] == b"JFIF"
    data[15] ^= 0x03  # X density, low byte
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_an_image_replaced_in_place_is_encoded_and_read_again(setup, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(setup.images, images)
    out, cache = tmp_path / "run", tmp_path / "cache"
    bench(setup, out, images=images, cache=cache, limit=2)
    metrics, _ = bench(setup, out, images=images, cache=cache, limit=2)
    assert metrics["timings"]["encode"]["cached"]

    first = json.loads(setup.questions.read_text().splitlines()[0])
    image = images / first["image_id"][5:7] / f"{first['image_id']}.jpg"
    st, original = image.stat(), image.read_bytes()
    same_size_other_bytes(image)
    metrics, _ = bench(setup, out, images=images, cache=cache, limit=2)
    assert not metrics["timings"]["encode"]["cached"]

    # a reader that sees images: the image's bytes are in its prompt's key
    from ragvqa import cached_stages
    from ragvqa.types import Answer, Passage, RetrievedPassage

    passages = (RetrievedPassage(Passage("p0", "Built in 1901.", title="Tower"), 1.0, 0),)
    answers = [Answer(first["data_id"], first["question"], str(image), passages=passages)]
    with Pipeline.load(setup.pipeline, ["reader.images=true"]) as pipe:
        keys = (pipe.reader_key(), pipe.template, pipe.reader_settings, [answers])
        changed = cached_stages.read_keys(*keys)
        image.write_bytes(original)
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert cached_stages.read_keys(*keys) != changed


# --- 2. replaced weights ------------------------------------------------------------------------


def retrain_in_place(folder: Path) -> None:
    """Other weights of the same shapes in `model.safetensors`: the same size, and the mtime
    put back."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = folder / "model.safetensors"
    st = path.stat()
    with safe_open(str(path), "pt") as fh:
        metadata = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    generator = torch.Generator().manual_seed(1)
    tensors = {
        k: v + 0.05 * torch.randn(v.shape, generator=generator, dtype=v.dtype)
        for k, v in tensors.items()
    }
    save_file(tensors, str(path), metadata=metadata)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_reader_weights_replaced_in_place_are_read_again(setup, tmp_path):
    """The issue: retrain a reader in the same folder, re-run, and the old model's answers came
    back."""
    reader = tmp_path / "reader"
    shutil.copytree(setup.root / "reader", reader)
    overrides = [
        "retrieval.mode=none",
        "reader.prompt=answer/no_retrieval@1",
        f"reader.generator.model={reader}",
    ]
    out = tmp_path / "run"
    bench(setup, out, *overrides)
    metrics, _ = bench(setup, out, *overrides)
    assert metrics["timings"]["generate"]["cached"] and journal_lines(out) == 4
    retrain_in_place(reader)
    metrics, _ = bench(setup, out, *overrides)
    assert not metrics["timings"]["generate"]["cached"]
    # every batch was generated again: the old journal, of which nothing is used, set aside
    assert journal_lines(out) == 4
    assert [p.name.split(".")[-1] for p in (out / "work").iterdir()].count("stale") == 1


def test_every_model_a_key_names_has_its_weights_in_it(setup, tmp_path):
    ranker = tmp_path / "ranker"
    ranker.mkdir()
    (ranker / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    weights = ranker / "model.safetensors"
    weights.write_bytes(b"\x01" * 4096)
    reader = tmp_path / "reader"
    shutil.copytree(setup.root / "reader", reader)
    config = dict(setup.config, rerank={"type": "cross_encoder", "model": str(ranker)})
    config["reader"] = dict(
        config["reader"], generator={"type": "transformers", "model": str(reader)}
    )
    file = tmp_path / "pipeline.yaml"
    file.write_text(yaml.safe_dump(config, sort_keys=False))

    def keys():
        with Pipeline.load(file) as pipe:  # nothing is loaded to key it
            return pipe.rerank_key(), pipe.reader_key()

    rerank, reader_key = keys()
    st = weights.stat()
    weights.write_bytes(b"\x02" * 4096)  # same size, same mtime: other weights
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert keys()[0] != rerank
    assert keys()[1] == reader_key
    retrain_in_place(reader)
    assert keys()[1] != reader_key

    # a hub model (no such local folder) is keyed by its name and revision
    hub = ["reader.generator={type: vllm, model: org/reader-7b, revision: abc123}"]
    with Pipeline.load(file, hub) as pipe:
        weights_key = pipe.reader_key()["weights"]
    assert weights_key == {"model": {"hub": "org/reader-7b", "revision": "abc123"}}


# --- 3. outputs that are inputs -----------------------------------------------------------------


def refused(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def test_report_refuses_every_input_of_the_run_and_says_where_it_wrote(setup, tmp_path):
    """The issue: `report RUN --out FILE` overwrote the run's own questions file and a benchmark
    image, with exit 0."""
    run = tmp_path / "run"
    shutil.copytree(setup.run, run)
    record = read_records(run)[0]
    image = Path(record.image)
    before = snapshot(setup.questions, image, setup.pipeline)
    refused(
        cli.invoke(app, ["report", str(run), "--out", str(setup.questions)]),
        "--out is the same file as the questions file; refusing to overwrite an input",
    )
    refused(
        cli.invoke(app, ["report", str(run), "--out", str(image)]),
        f"--out is the same file as the image of question {record.data_id}",
    )
    refused(
        cli.invoke(app, ["report", str(run), "--out", str(setup.pipeline)]),
        "--out is the same file as the pipeline file",
    )
    inside = {
        setup.images / "new.html": "--out is inside the oven image folder",
        setup.kb / "report.html": "--out is inside the KB (kb.path)",
        setup.index / "x" / ".." / "report.html": "--out is inside the index (index.path)",
    }
    for out, needle in inside.items():
        refused(cli.invoke(app, ["report", str(run), "--out", str(out)]), needle)
        assert not out.exists()
    assert snapshot(setup.questions, image, setup.pipeline) == before

    # a run recorded before config.yaml named its inputs: its benchmark files still count
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config.pop("inputs")["benchmark.images.oven"] == str(setup.images)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    refused(
        cli.invoke(app, ["report", str(run), "--out", str(setup.questions)]),
        "--out is the same file as the questions file",
    )
    refused(
        cli.invoke(app, ["report", str(run), "--out", str(setup.images / "r.html")]),
        "--out is inside the oven image folder",
    )
    assert snapshot(setup.questions, image, setup.pipeline) == before

    # --json: where the page went and how many questions it shows
    html = tmp_path / "r.html"
    result = cli.invoke(app, ["report", str(run), "--out", str(html), "--json", "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"report": str(html), "questions": 3}
    result = cli.invoke(app, ["report", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"report": str(run / "report.html"), "questions": 4}


def test_bench_refuses_a_run_folder_inside_an_input_folder(setup, tmp_path):
    for folder, needle in (
        (setup.images / "runs" / "r0", "--out is inside the oven image folder"),
        (setup.kb / "r0", "--out is inside the KB (kb.path)"),
        (setup.root / "reader" / "r0", "--out is inside the reader (reader.generator.model)"),
    ):
        with pytest.raises(UserError, match=r"--out is inside") as caught:
            bench(setup, folder, limit=1)
        assert needle in str(caught.value)
        assert not folder.exists()
    assert not (setup.images / "runs").exists()
