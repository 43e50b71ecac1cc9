"""Training the retriever: the loss by hand, the data order, exact resume, and a tiny model that
learns a synthetic image -> description task from chance to >= 90% recall@1."""

from __future__ import annotations

import json
import math

import pytest
import torch
from ret_fixtures import TEXT, VISION, clip_tokenizer, image_processor
from synthetic import COLOURS, SHAPES, write_task
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.models import load_retriever
from ragvqa.models.checkpoint import save_retriever
from ragvqa.models.config import HeadConfig, RetrieverConfig
from ragvqa.models.loss import contrastive_loss, late_interaction
from ragvqa.models.processor import RetProcessor
from ragvqa.models.retriever import RetRetriever
from ragvqa.train.trainer import TrainConfig, Trainer, batch_indices, lr_factor


def test_late_interaction_by_hand():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one query, two vectors
    d = torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.0, -1.0]]])
    # doc 0: max(1, .6) + max(0, .8) = 1.8; doc 1: max(0, 0) + max(1, -1) = 1.0
    assert late_interaction(q, d).tolist() == [[pytest.approx(1.8), pytest.approx(1.0)]]


def test_contrastive_loss_by_hand():
    e = torch.eye(2).unsqueeze(1)  # q_i = d_i = e_i: scores are the identity
    expected = math.log(1 + math.exp(-1))  # -log(e / (e + 1)) at temperature 1
    assert contrastive_loss(e, e, temperature=1.0).item() == pytest.approx(expected)
    # both rows share an entity: every document is a positive, nothing is a negative
    assert contrastive_loss(e, e, labels=["x", "x"], temperature=1.0).item() == pytest.approx(0.0)
    # with temperature 0.5 the scores double: log(1 + e^-2)
    assert contrastive_loss(e, e, temperature=0.5).item() == pytest.approx(
        math.log(1 + math.exp(-2))
    )


def test_batch_order_is_a_pure_function_of_the_step():
    first = [batch_indices(10, 3, seed=1, micro_step=s, world=1, rank=0) for s in range(3)]
    assert first == [batch_indices(10, 3, 1, s, 1, 0) for s in range(3)]
    assert len(set(sum(first, []))) == 9  # one epoch: no pair twice
    assert batch_indices(10, 3, 1, 3, 1, 0) != first[0]  # the next epoch is reshuffled
    ranks = [batch_indices(10, 2, 1, 0, world=2, rank=r) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1])


def test_lr_schedule():
    assert lr_factor(0, 4, 10) == 0.25 and lr_factor(3, 4, 10) == 1.0
    assert lr_factor(7, 4, 10) == pytest.approx(0.5)  # halfway through the cosine
    assert lr_factor(10, 4, 10) == pytest.approx(0.0)


def _tiny_config(query_instruction: str = "", **head_settings) -> RetrieverConfig:
    """Tiny towers, one shared head tapping layers 1-3, one pooled 32-d vector."""
    torch.manual_seed(0)
    head = HeadConfig(
        (1, 2, 3),
        (1, 2, 3),
        hidden_size=64,
        num_queries=4,
        output_vectors=1,
        proj_size=32,
        **head_settings,
    )
    return RetrieverConfig(
        dict(TEXT), dict(VISION), query=head, document=None, query_instruction=query_instruction
    )


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory):
    """A tiny random retriever (one pooled vector, shared head) saved in ragvqa's format."""
    folder = tmp_path_factory.mktemp("tiny_init")
    config = _tiny_config(dropout=0.05, query_instruction="find:")
    tokenizer = clip_tokenizer(folder / "tok")
    tokenizer.add_tokens([*COLOURS, *SHAPES])  # whole-word tokens for the descriptions
    processor = RetProcessor(tokenizer, image_processor())
    return save_retriever(RetRetriever(config), folder / "model", processor)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return write_task(tmp_path_factory.mktemp("task"), train_per_entity=32, eval_per_entity=4)


def _cfg(init, task, out, **kw):
    train, heldout = task
    base = dict(
        train=str(train),
        eval=str(heldout),
        out=str(out),
        init=str(init),
        batch_size=64,
        steps=300,  # 96% recall@1 at 300 (92% at 250, 99% at 450)
        warmup=20,
        lr=1.5e-3,
        tower_lr=1.5e-3,
        train_text_tower=True,
        train_vision_tower=True,
        eval_every=100,
        save_every=1000,
        progress=False,
        temperature=0.05,
    )
    return TrainConfig(**{**base, **kw})


def test_the_pixel_cache_reads_each_image_once_and_changes_nothing(tiny_init, task):
    from ragvqa.models.encode import load_image
    from ragvqa.train.data import PairCollator, load_pairs

    processor = RetProcessor.load(tiny_init)
    pairs = load_pairs(task[0])[:6] + [load_pairs(task[0])[0]]  # the first image twice
    pairs[1] = type(pairs[1])("q", None, "d", None, "E1")  # no image: the black stand-in
    calls = []

    def counted(path):
        calls.append(path)
        return load_image(path)

    cached = PairCollator(processor, "find:", counted)
    plain = PairCollator(processor, "find:", load_image, cache_mb=0)
    for _ in range(2):  # a second epoch over the same pairs
        a, b = cached(pairs), plain(pairs)
        for side in ("query", "document"):
            for key in a[side]:
                assert torch.equal(a[side][key], b[side][key]), (side, key)
    # 5 distinct images and one stand-in, each loaded once over both epochs
    assert sorted(map(str, calls)) == sorted(map(str, {p.query_image for p in pairs}))
    assert a["query"]["image_mask"].tolist() == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert plain.cached == {} and len(cached.cached) == 6


def test_training_learns_the_synthetic_task(tiny_init, task, tmp_path):
    trainer = Trainer(_cfg(tiny_init, task, tmp_path / "run"))
    from ragvqa.train.trainer import evaluate

    before = evaluate(trainer.model, trainer.processor, trainer.eval_pairs, (1, 5))
    record = trainer.run()
    assert before["recall@1"] <= 25.0  # chance is 1/32
    assert record["eval"]["recall@1"] >= 90.0, record
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 300 and lines[-1]["loss"] < lines[0]["loss"]
    assert load_retriever(tmp_path / "run" / "final", device="cpu").config.shared_heads


def test_resume_after_a_kill_is_exact(tiny_init, task, tmp_path):
    kw = dict(steps=6, eval_every=1000, learn_temperature=True, batch_size=16, grad_accum=2)
    straight = Trainer(_cfg(tiny_init, task, tmp_path / "a", **kw))
    straight.run()
    Trainer(_cfg(tiny_init, task, tmp_path / "b", stop_after=3, **kw)).run()
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["step-0000003"]
    resumed = Trainer(_cfg(tiny_init, task, tmp_path / "b", **kw))
    assert resumed.step == 3
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(straight.log_temp, resumed.log_temp)

    def losses(run):
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines]

    assert losses("a") == losses("b")


def test_resume_with_other_settings_is_refused(tiny_init, task, tmp_path):
    Trainer(_cfg(tiny_init, task, tmp_path / "c", steps=4, stop_after=1, eval_every=1000)).run()
    from ragvqa.errors import UserError

    with pytest.raises(UserError, match=r"other settings \(lr\)"):
        Trainer(_cfg(tiny_init, task, tmp_path / "c", steps=4, eval_every=1000, lr=1.0))


def test_cli_train_retriever(tiny_init, task, tmp_path):
    train, heldout = task
    result = CliRunner().invoke(
        app,
        [
            "train",
            "retriever",
            "--train",
            str(train),
            "--eval",
            str(heldout),
            "--init",
            str(tiny_init),
            "--out",
            str(tmp_path / "cli"),
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--eval-every",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["step"] == 2 and "recall@1" in summary["eval"]
    assert (tmp_path / "cli" / "final" / "model.safetensors").is_file()


def test_cli_train_bad_pairs(tiny_init, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "x", "document": "y"}\n{"query": "only a query"}\n')
    result = CliRunner().invoke(
        app,
        [
            "train",
            "retriever",
            "--train",
            str(bad),
            "--init",
            str(tiny_init),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {bad}:2: each side needs a text or an image "
        "(fields: query, query_image, document, document_image)"
    )


@pytest.mark.engine  # spawns two training processes
def test_two_process_training_equals_one_process_with_the_global_batch(task, tmp_path):
    """torchrun with 2 CPU ranks (gloo): each rank takes half of every global batch and the
    negatives are gathered across ranks, so the weights match one process with the whole
    batch (dropout off, since each rank draws its own masks)."""
    import socket
    import subprocess
    import sys

    config = _tiny_config(dropout=0.0, attention_dropout=0.0)
    init = save_retriever(
        RetRetriever(config),
        tmp_path / "init",
        RetProcessor(clip_tokenizer(tmp_path / "tok"), image_processor()),
    )
    train, _ = task
    args = [
        "train",
        "retriever",
        "--train",
        str(train),
        "--init",
        str(init),
        "--steps",
        "3",
        "--warmup",
        "1",
        "--lr",
        "1e-3",
        "--train-vision-tower",
        "--no-progress",
    ]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "ragvqa.cli",
    ]
    done = subprocess.run(
        [*launch, *args, "--batch-size", "8", "--out", str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    single = CliRunner().invoke(app, [*args, "--batch-size", "16", "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    # same weights, same global batch: the first losses agree to float precision; later ones
    # too, up to reduction-order noise that Adam's normalisation amplifies in near-zero grads
    loss = [
        [json.loads(x)["loss"] for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("ddp", "one")
    ]
    assert loss[0] == pytest.approx(loss[1], abs=1e-4)
    start = load_retriever(init, device="cpu").state_dict()
    a = load_retriever(tmp_path / "ddp" / "final", device="cpu").state_dict()
    b = load_retriever(tmp_path / "one" / "final", device="cpu").state_dict()
    moved = sum((b[k] - start[k]).norm() ** 2 for k in b) ** 0.5
    apart = sum((a[k] - b[k]).norm() ** 2 for k in a) ** 0.5
    assert moved > 0.1 and apart / moved < 1e-2, (apart, moved)
