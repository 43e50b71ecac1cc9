"""`ragvqa compare`: paired metrics worked out by hand, bootstrap intervals, flips, the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragvqa.benchmarks import benchmark_names, get_benchmark
from ragvqa.cli.main import app
from ragvqa.errors import UserError
from ragvqa.eval.compare import compare_runs
from ragvqa.eval.evqa_scorer import aggregate_evqa
from ragvqa.eval.infoseek_scorer import aggregate_infoseek
from ragvqa.run.records import RunRecord
from ragvqa.types import ExampleScore

runner = CliRunner()
# how compare_runs finds the plug-ins (eval/ does not import benchmarks/: the CLI passes these)
PLUGINS = {"get_benchmark": get_benchmark, "benchmark_names": benchmark_names}


def write_run(path: Path, records: list[RunRecord], **metrics: str) -> Path:
    """A finished run directory holding `records` (and a metrics.json, as `bench` writes)."""
    path.mkdir(parents=True)
    lines = [json.dumps(r.to_json()) for r in records]
    (path / "predictions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (path / "metrics.json").write_text(json.dumps({"benchmark": records[0].dataset, **metrics}))
    return path


def infoseek(data_id: str, split: str, score: int | None, **kw) -> RunRecord:
    return RunRecord(
        data_id=data_id,
        dataset="infoseek",
        question=f"question {data_id}?",
        prediction=f"pred {data_id} {score}",
        question_type=kw.pop("question_type", "String"),
        split=f"val_unseen_{split}",
        gold_answers=[f"gold {data_id}"],
        score=score,
        **kw,
    )


def evqa(data_id: str, score: int, qtype: str = "templated") -> RunRecord:
    return RunRecord(
        data_id=data_id,
        dataset="evqa",
        question="q",
        prediction=str(score),
        question_type=qtype,
        score=score,
    )


# q0-q3 unseen_question, q4-q7 unseen_entity, q8 not scored in A; q7 has no gold entity.
# A: uq 2/4 = 50, ue 1/4 = 25 -> final 2 / (1/50 + 1/25) = 33.33
# B: uq 3/4 = 75, ue 3/4 = 75 (q7 failed: 0) -> final 75
A_SCORES = [1, 1, 0, 0, 1, 0, 0, 0, None]
B_SCORES = [1, 0, 1, 1, 1, 1, 1, None, 1]
A_RANKS = [0, 3, None, 7, None, 0, None, 0, 9]  # judged: all but q7
# A retrieved 10 passages a question, B 5: recall@10 is A's only


def retrieved(depth: int) -> list[dict]:
    return [{"rank": i, "passage_id": f"p{i}"} for i in range(depth)]


def _by_hand_runs(tmp_path: Path) -> tuple[Path, Path]:
    def split(i: int) -> str:
        return "question" if i < 4 else "entity"

    def gold(i: int) -> list[str]:
        return [] if i == 7 else ["Q42"]

    recs_a = [
        infoseek(f"q{i}", split(i), s, gold_entities=gold(i), gold_rank=r, retrieved=retrieved(10))
        for i, (s, r) in enumerate(zip(A_SCORES, A_RANKS, strict=True))
    ]
    recs_b = [
        infoseek(
            f"q{i}", split(i), s, gold_entities=gold(i), gold_rank=None if i == 7 else 0,
            retrieved=retrieved(5),
        )
        for i, s in enumerate(B_SCORES)
    ]  # fmt: skip
    recs_b[7].status, recs_b[7].error = "failed", "generation timed out"
    recs_a.append(infoseek("only_a", "entity", 1))
    recs_b.insert(0, infoseek("only_b", "entity", 1))
    return write_run(tmp_path / "run_a", recs_a), write_run(tmp_path / "run_b", recs_b)


def test_infoseek_metrics_and_flips_worked_by_hand(tmp_path):
    run_a, run_b = _by_hand_runs(tmp_path)
    result = compare_runs(run_a, run_b, resamples=200, **PLUGINS)
    assert (result.dataset, result.common, result.only_a, result.only_b) == ("infoseek", 9, 1, 1)
    assert result.unscored == 1
    m = {d.name: d for d in result.metrics}
    assert (m["final_score"].a, m["final_score"].b) == (33.33, 75.0)
    assert m["final_score"].delta == pytest.approx(41.67)
    assert (m["unseen_question_score"].a, m["unseen_question_score"].b) == (50.0, 75.0)
    assert (m["unseen_entity_score"].a, m["unseen_entity_score"].b) == (25.0, 75.0)
    # recall over the 8 questions with a gold entity: A ranks 0,3,-,7,-,0,-,9; B all 0; B
    # retrieved 5 passages: no recall@10 (not 100, its recall@5 again)
    assert [m[f"entity_recall@{k}"].a for k in (1, 5, 10)] == [25.0, 37.5, 62.5]
    assert [m[f"entity_recall@{k}"].b for k in (1, 5, 10)] == [100.0, 100.0, None]
    assert (m["entity_recall@10"].delta, m["entity_recall@10"].low) == (None, None)
    assert sorted(n for n in m if n.startswith("entity_recall@")) == [
        "entity_recall@1", "entity_recall@10", "entity_recall@5"
    ]  # fmt: skip
    for d in result.metrics:
        if d.name != "entity_recall@10":
            assert d.low is not None and d.high is not None and d.low <= d.high
    # what each run was, and how many answers changed: all but q0 and q4 (the predictions
    # carry the score), among them q7 (failed in B) and q8 (unscored in A)
    assert (result.info_a.depth, result.info_b.depth) == (10, 5)
    assert result.changed == 7
    assert [f.data_id for f in result.fixed] == ["q2", "q3", "q5", "q6"]
    assert [f.data_id for f in result.broken] == ["q1"]
    flip = result.broken[0]
    assert (flip.prediction_a, flip.prediction_b, flip.gold_answers) == (
        "pred q1 1",
        "pred q1 0",
        ("gold q1",),
    )


def _random_runs(tmp_path: Path, rng: random.Random, dataset: str) -> tuple[Path, Path]:
    n = rng.randint(3, 40)
    ids = [f"x{i}" for i in range(n)]
    if dataset == "infoseek":
        kinds = [
            (rng.choice(["question", "entity"]), rng.choice(["String", "Time", "Numerical"]))
            for _ in ids
        ]

        def make(i: int) -> RunRecord:
            split, qtype = kinds[i]
            return infoseek(ids[i], split, rng.randint(0, 1), question_type=qtype)
    else:
        qtypes = [rng.choice(["templated", "automatic", "multi_answer", "2_hop"]) for _ in ids]

        def make(i: int) -> RunRecord:
            return evqa(ids[i], rng.randint(0, 1), qtypes[i])

    tag = rng.random()
    return (
        write_run(tmp_path / f"a{tag}", [make(i) for i in range(n)]),
        write_run(tmp_path / f"b{tag}", [make(i) for i in range(n)]),
    )


@pytest.mark.parametrize("dataset", ["infoseek", "evqa"])
def test_metrics_equal_the_scorers_aggregation_on_random_runs(tmp_path, dataset):
    rng = random.Random(7)
    for _ in range(15):
        run_a, run_b = _random_runs(tmp_path, rng, dataset)
        result = compare_runs(run_a, run_b, resamples=5, **PLUGINS)
        got = {d.name: d.b for d in result.metrics}
        lines = (run_b / "predictions.jsonl").read_text().splitlines()
        recs = [RunRecord.from_json(json.loads(line)) for line in lines]
        if dataset == "infoseek":
            split = {"val_unseen_question": "unseen_question", "val_unseen_entity": "unseen_entity"}
            scores = [
                ExampleScore(r.data_id, r.score, r.question_type, split[r.split], "exact")
                for r in recs
            ]
            official = aggregate_infoseek(scores)
            assert got["final_score"] == official["final_score"]
            assert got["unseen_entity_score"] == official["unseen_entity_score"]["score"]
        else:
            scores = [ExampleScore(r.data_id, r.score, r.question_type, "", "") for r in recs]
            official = aggregate_evqa(scores)
            assert [got[k] for k in ("single_hop", "two_hop", "all")] == [
                official[k] for k in ("single_hop", "two_hop", "all")
            ]


def test_b_right_where_a_was_wrong_is_significant(tmp_path):
    run_a = write_run(tmp_path / "a", [evqa(f"e{i}", i % 2) for i in range(200)])
    run_b = write_run(tmp_path / "b", [evqa(f"e{i}", 1) for i in range(200)])
    result = compare_runs(run_a, run_b, **PLUGINS)
    m = {d.name: d for d in result.metrics}
    assert (m["all"].a, m["all"].b, m["all"].delta) == (50.0, 100.0, 50.0)
    assert m["all"].low > 0 and m["all"].excludes_zero
    assert m["single_hop"].excludes_zero
    # no 2_hop question: nothing to compare
    assert (m["two_hop"].a, m["two_hop"].delta, m["two_hop"].low) == (None, None, None)
    assert not m["two_hop"].excludes_zero
    assert len(result.fixed) == 100 and result.broken == ()


def test_identical_runs_give_an_interval_of_exactly_zero(tmp_path):
    records = [
        evqa(f"e{i}", int(i % 3 == 0), "2_hop" if i % 4 == 0 else "automatic") for i in range(50)
    ]
    run_a, run_b = write_run(tmp_path / "a", records), write_run(tmp_path / "b", records)
    result = compare_runs(run_a, run_b, resamples=300, **PLUGINS)
    for d in result.metrics[:3]:  # single_hop, two_hop, all
        assert (d.delta, d.low, d.high, d.excludes_zero) == (0.0, 0.0, 0.0, False), d
    assert result.fixed == () and result.broken == ()


def test_one_flip_among_200_is_not_significant(tmp_path):
    scores = [i % 2 for i in range(200)]
    run_a = write_run(tmp_path / "a", [evqa(f"e{i}", s) for i, s in enumerate(scores)])
    scores[1] = 0  # B loses one question A had right
    run_b = write_run(tmp_path / "b", [evqa(f"e{i}", s) for i, s in enumerate(scores)])
    result = compare_runs(run_a, run_b, seed=3, **PLUGINS)
    d = next(d for d in result.metrics if d.name == "all")
    assert d.delta == pytest.approx(-0.5)
    # B - A = -0.5 x (times e1 is drawn, ~Poisson(1)): P(>= 4) = 1.9% < 2.5% < P(>= 3) = 8%,
    # and P(0) = 37% > 2.5%: the percentile interval is [-1.5, 0]
    assert (d.low, d.high, d.excludes_zero) == (-1.5, 0.0, False)
    assert [f.data_id for f in result.broken] == ["e1"] and result.fixed == ()
    again = compare_runs(run_a, run_b, seed=3, **PLUGINS)
    assert again.metrics == result.metrics  # a fixed seed gives the same intervals


def test_runs_of_different_datasets_are_refused(tmp_path):
    run_a = write_run(tmp_path / "a", [infoseek("q0", "entity", 1)])
    run_b = write_run(tmp_path / "b", [evqa("q0", 1)])
    with pytest.raises(UserError, match="run B is evqa but run A .* is infoseek") as err:
        compare_runs(run_a, run_b, **PLUGINS)
    assert err.value.path == str(run_b)


def test_duplicate_ids_and_no_common_question_are_refused(tmp_path):
    run_a = write_run(tmp_path / "a", [evqa("e0", 1), evqa("e0", 0)])
    run_b = write_run(tmp_path / "b", [evqa("e1", 1)])
    with pytest.raises(UserError, match="'e0' appears twice"):
        compare_runs(run_a, run_b, **PLUGINS)
    with pytest.raises(UserError, match="no question in common"):
        compare_runs(run_b, write_run(tmp_path / "c", [evqa("e2", 1)]), **PLUGINS)


def test_a_run_of_an_unregistered_benchmark_is_refused_with_the_names_passed_in(tmp_path):
    """The names come from the `benchmark_names` the caller passes, checked before any lookup."""
    record = evqa("e0", 1)
    record.dataset = "nope"
    run_a = write_run(tmp_path / "a", [record])
    names = {"get_benchmark": get_benchmark, "benchmark_names": lambda: ["evqa", "infoseek"]}
    with pytest.raises(UserError, match=r"unknown dataset 'nope' \(expected evqa, infoseek\)"):
        compare_runs(run_a, write_run(tmp_path / "b", [evqa("e0", 1)]), **names)


def test_cli_json_output(tmp_path):
    run_a, run_b = _by_hand_runs(tmp_path)
    result = runner.invoke(app, ["compare", str(run_a), str(run_b), "--json", "--resamples", "50"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    final = next(m for m in doc["metrics"] if m["name"] == "final_score")
    assert (final["a"], final["b"]) == (33.33, 75.0)
    assert (doc["common"], doc["only_a"], doc["only_b"], doc["resamples"]) == (9, 1, 1, 50)
    assert [f["data_id"] for f in doc["fixed"]] == ["q2", "q3", "q5", "q6"]
    assert doc["broken"][0]["gold_answers"] == ["gold q1"]
    assert "Final score" in result.stderr and "right in A, wrong in B" in result.stderr


def test_cli_b_worse_still_exits_0_and_table_only_without_json(tmp_path):
    run_a, run_b = _by_hand_runs(tmp_path)
    result = runner.invoke(app, ["compare", str(run_b), str(run_a), "--show", "1"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "-41.67" in result.stdout and "(first 1)" in result.stdout


def test_cli_missing_run_is_one_line_exit_2(tmp_path):
    run_a, _ = _by_hand_runs(tmp_path)
    missing = tmp_path / "nowhere"
    result = runner.invoke(app, ["compare", str(run_a), str(missing)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {missing}: no such run directory"


def test_cli_names_the_runs_counts_changes_that_tie_and_prints_no_empty_table(tmp_path):
    """Scores tie (each run has e0 right), yet B changed 2 answers; no question flipped, so
    no flip table is printed, only the count; every column has a header."""
    recs_a = [evqa("e0", 1), evqa("e1", 0), evqa("e2", 0)]
    recs_b = [evqa("e0", 1), evqa("e1", 0), evqa("e2", 0)]
    recs_b[1].prediction, recs_b[2].prediction = "other", "else"
    run_a = write_run(tmp_path / "a", recs_a, pipeline="p/demo.yaml", template="answer/x@1")
    run_b = write_run(tmp_path / "b", recs_b, pipeline="p/demo.yaml", template="answer/x@2")
    result = runner.invoke(app, ["compare", str(run_a), str(run_b), "--resamples", "20"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"A: {run_a}  pipeline p/demo.yaml  template answer/x@1"
    assert lines[1] == f"B: {run_b}  pipeline p/demo.yaml  template answer/x@2"
    header = next(line for line in lines if "metric" in line)
    assert [c.strip() for c in header.split("\t")] == [
        "metric", "A", "B", "B - A", "95% interval", "verdict"
    ]  # fmt: skip
    assert (
        "predictions changed: 2 of 3 questions (0 now right, 0 now wrong, 2 scored the same)"
        in (result.stdout)
    )
    assert "wrong in A, right in B" not in result.output
    assert "right in A, wrong in B" not in result.output
    assert "Single hop" in result.stdout and "single_hop" not in result.output


def test_a_benchmark_of_three_groups_is_compared_from_each_groups_counts(tmp_path, monkeypatch):
    """The tests' external glossary plug-in has three question groups (topics): the bootstrap
    figures come from three (n, hits) pairs and match its own aggregate on the full sample."""
    from ragvqa.registry import BENCHMARKS

    monkeypatch.setitem(BENCHMARKS._targets, "glossary", "plugins.glossary:Glossary")
    topics = ["city", "city", "river", "river", "person", "person"]

    def run(name: str, scores: list[int]) -> Path:
        records = [
            RunRecord(data_id=f"g{i}", dataset="glossary", question="q", prediction=str(s),
                      question_type=t, score=s)
            for i, (t, s) in enumerate(zip(topics, scores, strict=True))
        ]  # fmt: skip
        return write_run(tmp_path / name, records)

    # A: one right per topic (50 each, 50 all); B: both cities and rivers (100, 100, 0; 66.67)
    result = compare_runs(
        run("a", [1, 0, 1, 0, 1, 0]), run("b", [1, 1, 1, 1, 0, 0]), 300, **PLUGINS
    )
    got = {m.name: (m.a, m.b, m.delta) for m in result.metrics}
    assert got == {
        "all": (50.0, 66.67, 16.67),
        "city": (50.0, 100.0, 50.0),
        "river": (50.0, 100.0, 50.0),
        "person": (50.0, 0.0, -50.0),
    }
    assert [f.data_id for f in result.fixed] == ["g1", "g3"]
    assert [f.data_id for f in result.broken] == ["g4"]
    person = next(m for m in result.metrics if m.name == "person")
    assert person.high is not None and person.high <= 0  # B never right on a person
