"""Indexes over a KB: resumable encoding shards, faiss kinds, late interaction, manifests that
refuse mismatches, entity-level results, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ret_fixtures import TEXT, VISION, clip_tokenizer, image_processor
from typer.testing import CliRunner

import ragvqa.index.build as index_build
from ragvqa.cli.main import app
from ragvqa.errors import UserError
from ragvqa.index import faiss_index as fx
from ragvqa.index.build import IndexParams, build_index
from ragvqa.index.manifest import summary
from ragvqa.index.search import PassageIndex
from ragvqa.kb.build import BuildParams, build_kb
from ragvqa.kb.store import KBStore
from ragvqa.models.checkpoint import save_retriever
from ragvqa.models.config import HeadConfig, RetrieverConfig
from ragvqa.models.processor import RetProcessor
from ragvqa.models.retriever import RetRetriever

WORDS = "the thin rain in the red train near a tree at three".split()


def _kb_json(pages: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    kb = {}
    for i in range(pages):
        texts = [" ".join(rng.choice(WORDS, 6)) for _ in range(3)]
        kb[f"https://en.wikipedia.org/wiki/P{i}"] = {
            "title": f"p{i}",
            "section_titles": [f"p{i}", "a", "b"],
            "section_texts": texts,
            "image_urls": [],
            "image_section_indices": [],
        }
    return kb


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("index_kb")
    (folder / "kb.json").write_text(json.dumps(_kb_json(20)))
    build_kb(BuildParams("evqa", str(folder / "kb.json")), folder / "kb", progress=False)
    return folder / "kb"


def _encoder(folder, vectors: int, seed: int = 0):
    torch.manual_seed(seed)
    head = HeadConfig(
        (0, 1), (0, 1), hidden_size=64, num_queries=4, output_vectors=vectors, proj_size=16
    )
    config = RetrieverConfig(dict(TEXT), dict(VISION), query=head, document=None)
    processor = RetProcessor(clip_tokenizer(folder / "tok"), image_processor())
    return save_retriever(RetRetriever(config), folder / "model", processor)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _encoder(tmp_path_factory.mktemp("enc1"), vectors=1)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    return _encoder(tmp_path_factory.mktemp("enc4"), vectors=4)


def _params(kb_dir, encoder, **kw):
    return IndexParams(kb=str(kb_dir), encoder=str(encoder), rows_per_shard=16, **kw)


def test_flat_index_is_exact(kb_dir, single, tmp_path):
    manifest = build_index(_params(kb_dir, single), tmp_path / "idx", device="cpu", progress=False)
    assert (manifest["documents"], manifest["index_vectors"], manifest["dim"]) == (60, 60, 16)
    kb = KBStore(kb_dir)
    docs = np.load(tmp_path / "idx" / "vectors.f16.npy")
    assert docs.shape == (60, 1, 16) and docs.dtype == np.float16
    assert not (tmp_path / "idx" / "emb").exists()  # the shards were merged, then removed
    index = PassageIndex(tmp_path / "idx", kb)
    queries = docs[[5, 42]].astype(np.float32)
    scores, rows = index.search_vectors(queries, 5)
    brute = queries[:, 0] @ docs[:, 0].astype(np.float32).T
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :5], rtol=1e-5)
    assert rows[0, 0] == 5 and rows[1, 0] == 42  # a document is its own best match


def test_index_stores_what_the_encoder_computes(kb_dir, single, tmp_path):
    from dataclasses import replace

    from ragvqa.index.documents import document_text
    from ragvqa.models.encode import RetEncoder

    build_index(_params(kb_dir, single), tmp_path / "idx", device="cpu", progress=False)
    passage = KBStore(kb_dir).passage(7)
    assert document_text(passage, "{display_title}\n{text}") == f"p2 / a\n{passage.text}"
    encoder = RetEncoder.from_pretrained(single, device="cpu")
    expected = encoder.encode_documents(
        [replace(passage, text=document_text(passage, "{display_title}\n{text}"))]
    )
    stored = np.load(tmp_path / "idx" / "vectors.f16.npy")[7].astype(np.float32)
    np.testing.assert_allclose(stored, expected[0], atol=2e-3)  # fp16 storage


def test_late_interaction_equals_brute_force_maxsim(kb_dir, multi, tmp_path):
    manifest = build_index(_params(kb_dir, multi), tmp_path / "idx", device="cpu", progress=False)
    assert (manifest["vectors_per_document"], manifest["index_vectors"]) == (4, 240)
    index = PassageIndex(tmp_path / "idx", KBStore(kb_dir), candidates_per_vector=240)
    docs = np.load(tmp_path / "idx" / "vectors.f16.npy").astype(np.float32)
    queries = docs[[3, 50]]
    scores, rows = index.search_vectors(queries, 4)
    brute = np.einsum("qnd,cmd->qcnm", queries, docs).max(axis=3).sum(axis=2)
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :4], rtol=1e-4)
    # searched in chunks of one query: the same results
    index.chunk = 1
    chunked = index.search_vectors(queries, 4)
    np.testing.assert_array_equal(chunked[1], rows)
    np.testing.assert_array_equal(chunked[0], scores)


def test_rescore_by_hand():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float16)
    queries = np.array([[0.8, 0.6], [1.0, 0.0]], dtype=np.float32)
    # duplicates and -1 (no candidate) are ignored; query 2 has a single candidate
    candidates = np.array([[1, -1, 2, 1], [-1, 0, -1, -1]])
    scores, ids = fx.rescore(queries, candidates, vectors, 3)
    # q1: row 1 -> 0.6, row 2 -> 0.48 + 0.48 = 0.96; q2: row 0 -> 1.0
    np.testing.assert_array_equal(ids, [[2, 1, -1], [0, -1, -1]])
    np.testing.assert_allclose(scores[:, :2], [[0.96, 0.6], [1.0, -np.inf]], rtol=1e-3)
    assert scores[0, 2] == -np.inf


def test_stored_vectors_gather_rows_and_their_pages(tmp_path, monkeypatch):
    import mmap

    import ragvqa.index.stored as stored_mod
    from ragvqa.index.stored import StoredVectors

    data = np.arange(40 * 2 * 384, dtype=np.float16).reshape(40, 2, 384)  # 1,536 B per row
    np.save(tmp_path / "v.npy", data)
    store = StoredVectors(tmp_path / "v.npy")
    np.testing.assert_array_equal(store[[7, 0, 39]], data[[7, 0, 39]])  # order kept
    assert len(store) == 40 and store.array.offset == 128  # the .npy header
    page = mmap.PAGESIZE
    assert page == 4096
    # row 0: bytes 128..1663 -> page 0; row 2: 3200..4735 -> pages 0-1; row 5: 7808..9343
    # -> pages 1-2; row 39 (the last): 60032..61567 -> pages 14-15 (61440 starts page 15),
    # and the 61,568-byte file ends inside page 15
    assert store.page_ranges(np.array([5, 0, 2, 39, 2])) == [
        (0, 4096),
        (0, 8192),
        (4096, 8192),
        (57344, 8192),
    ]
    store.prefetch(np.array([39, 0]))  # the last page is clamped at the end of the file
    clock = iter([0.0, 1.0, 5.0, 5.0])  # a slow gather (1 s), then an instant one
    monkeypatch.setattr(stored_mod.time, "perf_counter", lambda: next(clock))
    store[[1, 2]]
    assert store.cold
    store[[1, 2]]
    assert not store.cold


def test_refined_ivfpq_rescores_from_the_stored_vectors(kb_dir, single, tmp_path):
    faiss = fx.FaissParams(kind="ivfpq", nlist=2, m=4, nbits=4, nprobe=2, refine=20)
    manifest = build_index(
        _params(kb_dir, single, faiss=faiss), tmp_path / "idx", device="cpu", progress=False
    )
    assert "vectors.f16.npy" in manifest["files"]
    # the faiss file holds codes (4 half-bytes) and ids, not the 64-byte float vectors
    assert manifest["files"]["faiss.index"]["bytes"] < 60 * 16 * 4
    info = summary(manifest)
    assert info["bytes_in_memory"] == manifest["files"]["faiss.index"]["bytes"]
    assert info["bytes_memory_mapped"] == 128 + 60 * 16 * 2  # .npy header + fp16 rows
    docs = np.load(tmp_path / "idx" / "vectors.f16.npy").astype(np.float32)
    assert docs.shape == (60, 1, 16)
    index = PassageIndex(tmp_path / "idx", KBStore(kb_dir))
    queries = docs[[5, 42]]
    scores, rows = index.search_vectors(queries, 5)
    # 20 x 5 candidates cover all 60 documents, so the refined ranking is the exact one
    brute = queries[:, 0] @ docs[:, 0].T
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :5], rtol=1e-5)


def test_one_passage_per_page(kb_dir, single, tmp_path):
    build_index(_params(kb_dir, single), tmp_path / "idx", device="cpu", progress=False)
    index = PassageIndex(tmp_path / "idx", KBStore(kb_dir))
    docs = np.load(tmp_path / "idx" / "vectors.f16.npy").astype(np.float32)
    [plain] = index.retrieve(["q"], docs[[0]], 10)
    [pages] = index.retrieve(["q"], docs[[0]], 10, one_per_page=True)
    assert [p.rank for p in pages.passages] == list(range(10))
    assert len({p.passage.page_id for p in pages.passages}) == 10
    assert len({p.passage.page_id for p in plain.passages}) < 10  # pages have 3 passages each
    assert pages.passages[0].passage.passage_id == plain.passages[0].passage.passage_id
    assert pages.passages[0].score == pytest.approx(plain.passages[0].score)


def test_killed_encoding_resumes_without_recomputing(kb_dir, single, tmp_path, monkeypatch):
    clean = build_index(_params(kb_dir, single), tmp_path / "clean", device="cpu", progress=False)
    real, calls = index_build.write_shard, []

    def dies_on_third(folder, i, vectors):
        calls.append(i)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(folder, i, vectors)

    monkeypatch.setattr(index_build, "write_shard", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_index(_params(kb_dir, single), tmp_path / "idx", device="cpu", progress=False)
    with pytest.raises(UserError, match="index build not finished"):
        PassageIndex(tmp_path / "idx", KBStore(kb_dir))
    calls.clear()
    monkeypatch.setattr(
        index_build, "write_shard", lambda f, i, v: (calls.append(i), real(f, i, v))
    )
    resumed = build_index(_params(kb_dir, single), tmp_path / "idx", device="cpu", progress=False)
    assert calls == [2, 3]  # shards 0 and 1 were kept
    vectors = "vectors.f16.npy"
    assert resumed["files"][vectors]["sha256"] == clean["files"][vectors]["sha256"]
    # building again with other faiss settings encodes nothing (nor loads the encoder's
    # weights): it starts from the stored vectors
    from ragvqa.models.encode import RetEncoder

    def no_weights(*a, **k):
        raise AssertionError("the encoder was loaded")

    monkeypatch.setattr(RetEncoder, "from_pretrained", no_weights)
    calls.clear()
    again = build_index(
        _params(kb_dir, single, faiss=fx.FaissParams(kind="hnsw")),
        tmp_path / "idx",
        device="cpu",
        progress=False,
    )
    assert calls == [] and again["faiss"]["kind"] == "hnsw"
    assert again["files"][vectors] == resumed["files"][vectors]
    assert again["encoder_dtype"] == resumed["encoder_dtype"] == "float32"


def test_mismatches_are_refused(kb_dir, single, multi, tmp_path):
    from ragvqa.index.manifest import encoder_identity
    from ragvqa.models import load_retriever

    build_index(_params(kb_dir, single), tmp_path / "idx", device="cpu", progress=False)
    other_kb = tmp_path / "kb2.json"
    other_kb.write_text(json.dumps(_kb_json(20, seed=1)))
    build_kb(BuildParams("evqa", str(other_kb)), tmp_path / "kb2", progress=False)
    with pytest.raises(UserError, match="the KB does not match the index"):
        PassageIndex(tmp_path / "idx", KBStore(tmp_path / "kb2"))
    wrong = encoder_identity(load_retriever(multi, device="cpu"))
    with pytest.raises(UserError, match="the index was built with encoder"):
        PassageIndex(tmp_path / "idx", KBStore(kb_dir), encoder_identity=wrong)
    right = encoder_identity(load_retriever(single, device="cpu"))
    PassageIndex(tmp_path / "idx", KBStore(kb_dir), encoder_identity=right)
    with pytest.raises(UserError, match="another KB, encoder or settings"):
        build_index(
            _params(tmp_path / "kb2", single), tmp_path / "idx", device="cpu", progress=False
        )
    faiss_file = tmp_path / "idx" / "faiss.index"
    faiss_file.write_bytes(faiss_file.read_bytes()[:-10])
    with pytest.raises(UserError, match="truncated or replaced"):
        PassageIndex(tmp_path / "idx", KBStore(kb_dir))


@pytest.mark.parametrize(
    "params",
    [
        fx.FaissParams(kind="hnsw", ef_search=64),
        fx.FaissParams(kind="ivfpq", nlist=16, m=16, nprobe=8, refine=8),
    ],
)
def test_approximate_kinds_find_the_exact_neighbours(params):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 32))
    data = centers[rng.integers(0, 20, 4000)] + 0.3 * rng.normal(size=(4000, 32))
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = data[:100] + 0.05 * rng.normal(size=(100, 32))
    exact, _ = fx.build_index(data.astype(np.float32), fx.FaissParams(kind="flat"))
    approx, resolved = fx.build_index(data.astype(np.float32), params)
    approx = fx.configure(approx, resolved)
    _, truth = fx.search(exact, queries, 10)
    _, found = fx.search(approx, queries, 10, refine=resolved.refine, vectors=data)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.9, recall


def test_cli_build_info_verify(kb_dir, single, tmp_path):
    runner = CliRunner()
    out = tmp_path / "idx"
    result = runner.invoke(
        app,
        [
            "index",
            "build",
            "--kb",
            str(kb_dir),
            "--encoder",
            str(single),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "60 passages, 60 vectors (1 x 16 per passage), flat index" in result.stderr
    info = json.loads(runner.invoke(app, ["index", "info", str(out), "--json"]).stdout)
    assert info["documents"] == 60 and info["kb"]["fingerprint"] == KBStore(kb_dir).fingerprint
    # a flat index holds the float32 vectors themselves (60 x 16 x 4 bytes) in memory
    assert info["bytes_in_memory"] >= 60 * 16 * 4 and info["bytes_memory_mapped"] == 0
    table = runner.invoke(app, ["index", "info", str(out)]).stdout
    for row in ("faiss.kind", "flat", "encoder.config_hash", "kb.passages", f"{info['bytes']:,}"):
        assert row in table, row
    assert runner.invoke(app, ["index", "verify", str(out)]).exit_code == 0
    stored = out / "vectors.f16.npy"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    stored.write_bytes(bytes(data))
    result = runner.invoke(app, ["index", "verify", str(out)])
    assert result.exit_code == 2 and "content changed since the build" in result.stderr
    result = runner.invoke(app, ["index", "info", str(tmp_path)])
    assert result.exit_code == 2 and "not an index folder" in result.stderr


@pytest.mark.engine  # starts a Ray cluster
def test_ray_engine_writes_the_same_shards(kb_dir, single, tmp_path):
    """A local Ray instance on loopback (actor pool of two encoders) writes the shards the
    in-process path writes."""
    local = build_index(_params(kb_dir, single), tmp_path / "local", device="cpu", progress=False)
    ray_built = build_index(
        _params(kb_dir, single, engine="ray", ray_actors=2),
        tmp_path / "ray",
        device="cpu",
        progress=False,
    )
    a = np.load(tmp_path / "local" / "vectors.f16.npy").astype(np.float32)
    b = np.load(tmp_path / "ray" / "vectors.f16.npy").astype(np.float32)
    assert a.shape == b.shape == (60, 1, 16)
    np.testing.assert_allclose(a, b, atol=2e-3)  # fp16 storage; thread counts may differ
    assert ray_built["index_vectors"] == local["index_vectors"] == 60
    assert ray_built["kb"] == local["kb"]


def test_bf16_build_records_its_dtype_and_stays_close_to_fp32(kb_dir, single, tmp_path):
    from ragvqa.index.documents import DEFAULT_TEMPLATE
    from ragvqa.index.ray_engine import _ShardEncoder

    fp32 = build_index(_params(kb_dir, single), tmp_path / "fp32", device="cpu", progress=False)
    bf16 = build_index(
        _params(kb_dir, single, dtype="bfloat16"), tmp_path / "bf16", device="cpu", progress=False
    )
    assert fp32["encoder_dtype"] == "float32" and bf16["encoder_dtype"] == "bfloat16"
    a = np.load(tmp_path / "fp32" / "vectors.f16.npy")
    b = np.load(tmp_path / "bf16" / "vectors.f16.npy")
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).max()
    assert 0 < diff < 5e-2, diff  # encoded in bf16 indeed, and close to fp32
    with pytest.raises(UserError, match="another KB, encoder or settings"):
        build_index(_params(kb_dir, single, dtype="float32"), tmp_path / "bf16", progress=False)
    # the Ray actors get the dtype too
    actor = _ShardEncoder(
        str(kb_dir), str(single), str(tmp_path / "ray"), DEFAULT_TEMPLATE, 8, "bfloat16"
    )
    assert actor.encoder.model.dtype == torch.bfloat16


def test_cli_refuses_an_ivfpq_index_over_too_few_vectors(kb_dir, single, tmp_path):
    args = ["index", "build", "--kb", str(kb_dir), "--encoder", str(single), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "i"), "--type", "ivfpq"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    # 60 passages: 8-bit PQ codebooks need 256 training vectors
    assert "needs at least 256 vectors to train, got 60" in result.output


def test_cli_refuses_an_unknown_dtype(kb_dir, single, tmp_path):
    args = ["index", "build", "--kb", str(kb_dir), "--encoder", str(single)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "i"), "--dtype", "int8"])
    assert result.exit_code != 0
    assert "unknown dtype 'int8' (float32, float16, bfloat16)" in result.output
    assert "Traceback" not in result.output


def test_checkpoint_identity_reads_no_weights_and_equals_the_loaded_one(single, tmp_path):
    from ret_fixtures import official_tiny, write_official_checkpoint

    from ragvqa.index.manifest import checkpoint_identity, encoder_identity
    from ragvqa.models.checkpoint import load_retriever

    official = tmp_path / "official"
    write_official_checkpoint(official, official_tiny())
    for folder in (single, official):
        loaded = encoder_identity(load_retriever(folder, device="cpu"))
        assert checkpoint_identity(folder) == loaded
    assert checkpoint_identity(single) != checkpoint_identity(official)
