"""Pipeline files: sections, paths, overrides, shipped pipelines, KB and index built on first
use, offline errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragvqa.errors import UserError
from ragvqa.pipeline import Pipeline
from ragvqa.types import VQAQuery

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def test_paths_are_relative_to_the_file_and_hub_ids_stay(world, tmp_path, monkeypatch):
    pipe = Pipeline.load(world["pipeline"], ["reader.passages=3", "retrieval.top_k=7"])
    root = world["root"].resolve()
    assert pipe.model_ref("models/reader") == str(root / "models" / "reader")
    assert pipe.model_ref("Qwen/Qwen2.5-VL-7B-Instruct") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert (pipe.reader_settings.passages, pipe.top_k, pipe.reader_settings.images) == (3, 7, True)
    monkeypatch.setenv("RAGVQA_CACHE", str(tmp_path / "cache"))
    assert pipe.path("${RAGVQA_CACHE}/kb/x") == str(tmp_path / "cache" / "kb" / "x")


def test_unknown_sections_and_settings_are_refused(world, tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("encoder: {model: x}\nretrival: {top_k: 3}\n")
    with pytest.raises(UserError, match=r"retrival: unknown pipeline section; did you mean"):
        Pipeline.load(bad)
    with pytest.raises(UserError, match="reader.sampling.temprature .*did you mean"):
        Pipeline.load(world["pipeline"], ["reader.sampling.temprature=0.5"])
    with pytest.raises(UserError, match="the pipeline's 'encoder' section needs 'model'"):
        Pipeline.load(world["pipeline"], ["encoder.model="]).check()


@pytest.mark.parametrize("name", sorted(p.name for p in PIPELINES.glob("*.yaml")))
def test_shipped_pipelines_name_known_components(name):
    """Every shipped pipeline resolves its base, its components and its template offline."""
    pipe = Pipeline.load(PIPELINES / name)
    pipe.check()
    assert pipe.section("encoder")["model"]
    assert pipe.template.ref.startswith("answer/")


def test_default_pipeline_uses_real_checkpoints_by_hub_id():
    pipe = Pipeline.load(None)
    assert pipe.model_ref(pipe.section("encoder")["model"]) == "aimagelab/ReT-CLIP-ViT-L-14"
    generator = pipe.section("reader")["generator"]
    assert (generator["type"], generator["model"]) == ("vllm", "Qwen/Qwen2.5-VL-7B-Instruct")
    assert pipe.section("kb")["source"]["input"].startswith("hf://datasets/")


def test_offline_default_kb_fails_in_one_line_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGVQA_CACHE", str(tmp_path))
    pipe = Pipeline.load(None)
    with pytest.raises(UserError) as err:
        _ = pipe.kb
    text = str(err.value)
    assert "\n" not in text and "hf://datasets/aimagelab/ReT-M2KR" in text
    assert "--set kb.source.input=" in text


def _fresh_pipeline_file(world, tmp_path) -> Path:
    """The world's pipeline with KB and index folders under tmp_path (not built yet)."""
    built = tmp_path / "p.yaml"
    built.write_text(
        (world["root"] / "pipeline.yaml").read_text()
        .replace("path: kb", f"path: {tmp_path}/kb\n  source: {{format: evqa, input: "
                 f"{world['root']}/kb.json, images_dir: {world['root']}/kb_images}}")
        .replace("path: index", f"path: {tmp_path}/index\n  faiss: {{kind: flat}}")
        .replace("models/", f"{world['root']}/models/")
    )  # fmt: skip
    return built


def test_kb_and_index_are_built_on_first_use(world, tmp_path):
    """A pipeline whose KB and index folders do not exist builds both from kb.source; the
    result searches exactly like the world's prebuilt index."""
    built = _fresh_pipeline_file(world, tmp_path)
    fresh = Pipeline.load(built)
    prebuilt = Pipeline.load(world["pipeline"])
    assert fresh.kb.info()["pages"] == 50 and fresh.kb.fingerprint == prebuilt.kb.fingerprint
    queries = [VQAQuery("a", "When was this tower built?"), VQAQuery("b", "Which city?")]
    vectors, present = fresh.encode(queries)
    assert present.tolist() == [0.0, 0.0]
    got = fresh.search(["a", "b"], vectors)
    want = prebuilt.search(["a", "b"], vectors)
    assert [[p.passage.passage_id for p in r.passages] for r in got] == [
        [p.passage.passage_id for p in r.passages] for r in want
    ]
    assert np.allclose([p.score for p in got[0].passages], [p.score for p in want[0].passages])
    assert (tmp_path / "index" / "index.json").is_file()


def test_render_takes_the_top_passages_and_drops_images_for_text_readers(world, llama):
    from transformers import AutoTokenizer

    from ragvqa.types import Passage, RetrievedPassage

    class Tokenizing:  # the real tokenizer of a text reader, without an engine
        def tokenizer(self):
            return AutoTokenizer.from_pretrained(llama)

    reader = {"generator": Tokenizing()}
    text_reader = ["reader.images=false", "reader.passages=2"]
    text_reader += ["reader.prompt=answer/evidence_fallback@1"]
    pipe = Pipeline.load(world["pipeline"], [*text_reader, "reader.context=512"], components=reader)
    passages = tuple(
        RetrievedPassage(Passage(f"p{i}", f"text {i}", title=f"T{i}", page_id=f"P{i}"), 1 - i, i)
        for i in range(4)
    )
    prompt = pipe.render("When?", "/x.jpg", passages)
    text = " ".join(m.text for m in prompt.messages)
    assert "T0" in text and "T1" in text and "T2" not in text
    assert prompt.images() == [] and prompt.truncated_passages == 0
    assert pipe.evidence_count(prompt, passages) == 2
    # a reader that cannot count images is not given any: one line, before the engine is asked
    with_images = Pipeline.load(
        world["pipeline"],
        [*text_reader, "reader.images=true", "reader.context=2048"],
        components=reader,
    )
    with pytest.raises(UserError, match="the reader reads no images"):
        with_images.render("When?", "/x.jpg", passages)
    # a context that fits one passage (154 tokens + 8 to answer) but not two (168) keeps one
    # 1 passage: 154 tokens
    tight = Pipeline.load(
        world["pipeline"], [*text_reader, "reader.context=170"], components=reader
    )
    cut = tight.render("When?", "/x.jpg", passages)
    assert cut.truncated_passages == 1
    assert tight.evidence_count(cut, passages) == 1
    assert "T1" not in " ".join(m.text for m in cut.messages)


def test_rerankers_are_configured_from_the_pipeline_file(world, shared_engine):
    """entity_choice from YAML: its template and sampling, the pipeline's reader; the chosen
    or first-stage order comes back with the same passages."""
    from ragvqa.rerank.entity_choice import EntityChoiceReranker
    from ragvqa.rerank.ret_sections import RetSectionReranker

    pipe = Pipeline.load(
        world["pipeline"], ["rerank.type=entity_choice", "rerank.max_candidates=3"]
    )
    reranker = pipe.reranker
    assert isinstance(reranker, EntityChoiceReranker)
    assert reranker.template.ref == "rerank/entity_choice@1" and reranker.max_candidates == 3
    assert reranker.generator is shared_engine and reranker.sampling.max_tokens == 8
    queries = [VQAQuery("a", "Which city is this tower in?")]
    vectors, _ = pipe.encode(queries)
    [first] = pipe.search(["a"], vectors)
    [ranked] = pipe.rerank(queries, [first])
    assert sorted(p.passage.passage_id for p in ranked.passages) == sorted(
        p.passage.passage_id for p in first.passages
    )
    sections = Pipeline.load(world["pipeline"], ["rerank.type=ret_sections", "rerank.alpha=0.3"])
    assert isinstance(sections.reranker, RetSectionReranker) and sections.reranker.alpha == 0.3


def test_changed_index_settings_rebuild_faiss_or_apply_at_search(world, tmp_path, capsys):
    """Build-time faiss settings that differ from the built index rebuild only the faiss
    index (the embedding shards are reused); search-time ones apply without a rebuild."""
    from ragvqa.index.search import PassageIndex

    built = _fresh_pipeline_file(world, tmp_path)
    flat = Pipeline.load(built)
    queries = [VQAQuery("a", "When was this tower built?"), VQAQuery("b", "Which city?")]
    vectors, _ = flat.encode(queries)
    exact = flat.search(["a", "b"], vectors)
    folder = tmp_path / "index"
    stored = (folder / "vectors.f16.npy").stat().st_mtime_ns
    # 150 passages of dim 16: 2 lists, 8 half-byte codes; refine x 80 covers every passage
    ivf = ["kind=ivfpq", "nlist=2", "m=8", "nbits=4", "nprobe=2", "refine=80"]
    # rebuilding must not encode the KB again: no encoder to load
    refined = Pipeline.load(built, [f"index.faiss.{s}" for s in ivf], components={"encoder": None})
    got = refined.search(["a", "b"], vectors)
    assert "rebuilding the faiss index" in capsys.readouterr().err
    assert refined.index.manifest["faiss"]["kind"] == "ivfpq"
    assert (folder / "vectors.f16.npy").stat().st_mtime_ns == stored  # read, not rewritten
    ids = [[p.passage.passage_id for p in r.passages] for r in got]
    assert ids == [[p.passage.passage_id for p in r.passages] for r in exact]
    assert np.allclose([p.score for p in got[0].passages], [p.score for p in exact[0].passages])

    stamp = (folder / "faiss.index").stat().st_mtime_ns
    probe1 = Pipeline.load(built, [f"index.faiss.{s}" for s in ivf] + ["index.faiss.nprobe=1"])
    assert probe1.index.params.nprobe == 1 and refined.index.params.nprobe == 2
    assert (folder / "faiss.index").stat().st_mtime_ns == stamp  # not rebuilt
    assert "rebuilding" not in capsys.readouterr().err
    assert probe1.index_key() != refined.index_key()  # search results are cached apart

    with pytest.raises(UserError, match="nlist shape the index file"):
        PassageIndex(folder, refined.kb, search={"nlist": 4})
    plain = Pipeline.load(built, [f"index.faiss.{s}" for s in ivf[:-1]] + ["index.faiss.nlist=3"])
    assert plain.index.manifest["faiss"]["nlist"] == 3 and plain.index.params.refine == 0
    # refinement is a search-time setting: the stored vectors are always there
    again = PassageIndex(folder, plain.kb, search={"refine": 80})
    _, rows = again.search_vectors(vectors, 5)
    docs = np.load(folder / "vectors.f16.npy").astype(np.float32)[:, 0]
    brute = vectors[:, 0] @ docs.T
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :5])
    # an index written by an earlier version without stored vectors cannot refine
    manifest = json.loads((folder / "index.json").read_text())
    del manifest["files"]["vectors.f16.npy"]
    (folder / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="keeps no stored vectors, so it cannot refine"):
        PassageIndex(folder, plain.kb, search={"refine": 5})
