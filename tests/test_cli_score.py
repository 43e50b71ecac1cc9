"""`ragvqa score` through typer's runner: the output contract, and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_evqa_csv, write_jsonl
from typer.testing import CliRunner

from ragvqa.cli.main import app

runner = CliRunner()

QUESTIONS = [
    {
        "data_id": "v0",
        "image_id": "oven_00000001",
        "question": "q",
        "answer": ["Paris"],
        "answer_eval": ["Paris"],
        "data_split": "val_unseen_question",
    },
    {
        "data_id": "v1",
        "image_id": "oven_00000002",
        "question": "q",
        "answer": ["7"],
        "answer_eval": [{"wikidata": 7, "range": [6.5, 7.5]}],
        "data_split": "val_unseen_entity",
    },
]
QTYPES = [
    {"data_id": "v0", "question_type": "String"},
    {"data_id": "v1", "question_type": "Numerical"},
]


@pytest.fixture
def infoseek_files(tmp_path):
    return {
        "--questions": write_jsonl(tmp_path / "q.jsonl", QUESTIONS),
        "--qtypes": write_jsonl(tmp_path / "t.jsonl", QTYPES),
        "--predictions": write_jsonl(
            tmp_path / "p.jsonl",
            [
                {"data_id": "v0", "prediction": "paris"},
                {"data_id": "v1", "prediction": "about 8"},
                {"data_id": "zz", "prediction": "?"},
            ],
        ),
    }


def _args(files):
    return [x for k, v in files.items() for x in (k, str(v))]


def test_score_infoseek_writes_official_structure(tmp_path, infoseek_files):
    out, per = tmp_path / "m.json", tmp_path / "e.jsonl"
    result = runner.invoke(
        app,
        [
            "score",
            "infoseek",
            *_args(infoseek_files),
            "--output",
            str(out),
            "--per-example",
            str(per),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert metrics["final_score"] == 0.0  # HM(100, 0 -> 1e-12)
    assert metrics["unseen_question_score"] == {
        "score": 100.0,
        "score_time": 0,
        "score_num": 0,
        "score_string": 100.0,
    }
    assert metrics["unseen_entity_score"]["score_num"] == 0.0
    assert metrics["coverage"]["unknown_ids"] == 1
    lines = [json.loads(x) for x in per.read_text().splitlines()]
    assert lines == [{"data_id": "v0", "score": 1}, {"data_id": "v1", "score": 0}]
    assert "unseen_question" in result.stdout and "1 with unknown ids dropped" in result.stderr
    assert result.stdout.splitlines()[0] == "split\tscore\ttime\tnumerical\tstring"


def test_score_infoseek_prints_json_on_stdout_without_output(infoseek_files):
    result = runner.invoke(app, ["score", "infoseek", *_args(infoseek_files)])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["unseen_question_score"]["score"] == 100.0


def test_score_infoseek_bad_prediction_line(tmp_path, infoseek_files):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"data_id": "v0", "prediction": "x"}\n{"data_id": "v1", "prediction": 7}\n')
    out = tmp_path / "m.json"
    files = {**infoseek_files, "--predictions": bad}
    result = runner.invoke(app, ["score", "infoseek", *_args(files), "--output", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {bad}:2: field 'prediction' is a int, not a string")
    assert not out.exists()


def test_score_infoseek_missing_range_and_missing_file(tmp_path, infoseek_files):
    q = write_jsonl(tmp_path / "q2.jsonl", [QUESTIONS[0], {**QUESTIONS[1], "answer_eval": ["7"]}])
    result = runner.invoke(app, ["score", "infoseek", *_args({**infoseek_files, "--questions": q})])
    assert result.exit_code == 2
    assert "q2.jsonl:2: numerical answer without a range" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(
        app, ["score", "infoseek", *_args({**infoseek_files, "--qtypes": tmp_path / "none"})]
    )
    assert result.exit_code == 2 and "file not found" in result.stderr


def test_failed_run_keeps_previous_output(tmp_path, infoseek_files):
    out = tmp_path / "m.json"
    out.write_text('{"previous": true}')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    files = {**infoseek_files, "--predictions": bad}
    result = runner.invoke(app, ["score", "infoseek", *_args(files), "--output", str(out)])
    assert result.exit_code == 2
    assert json.loads(out.read_text()) == {"previous": True}


EVQA_ROWS = [
    {
        "question": "q0",
        "answer": "Paris",
        "question_type": "templated",
        "dataset_image_ids": "a",
        "dataset_name": "landmarks",
    },
    {
        "question": "q1",
        "answer": "Rome",
        "question_type": "2_hop",
        "dataset_image_ids": "b",
        "dataset_name": "landmarks",
    },
]


def test_score_evqa_exact_match_only(tmp_path):
    csv_path = write_evqa_csv(tmp_path / "test.csv", EVQA_ROWS)
    preds = write_jsonl(
        tmp_path / "p.jsonl",
        [{"data_id": 0, "prediction": "paris"}, {"data_id": "1", "prediction": "Milan"}],
    )
    out, per = tmp_path / "m.json", tmp_path / "e.jsonl"
    result = runner.invoke(
        app,
        [
            "score",
            "evqa",
            "--predictions",
            str(preds),
            "--questions",
            str(csv_path),
            "--output",
            str(out),
            "--per-example",
            str(per),
        ],
    )
    assert result.exit_code == 0, result.output
    m = json.loads(out.read_text())
    assert (m["single_hop"], m["two_hop"], m["all"]) == (100.0, 0.0, 50.0)
    assert m["bem"] is None and m["scoring"] == "exact match only"
    assert "exact match only" in result.stderr
    assert per.read_text().splitlines() == [
        '{"data_id":"0","score":1}',
        '{"data_id":"1","score":0}',
    ]


def test_score_evqa_with_bem(tmp_path, bem_dir):
    csv_path = write_evqa_csv(tmp_path / "test.csv", EVQA_ROWS)
    preds = write_jsonl(tmp_path / "p.jsonl", [{"data_id": "1", "prediction": "Milan"}])
    result = runner.invoke(
        app,
        [
            "score",
            "evqa",
            "--predictions",
            str(preds),
            "--questions",
            str(csv_path),
            "--bem-model",
            str(bem_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["two_hop"] == 100.0 and m["bem"] == str(bem_dir)
    assert m["coverage"]["missing_predictions"] == 1


def test_score_evqa_bad_bem_dir(tmp_path):
    csv_path = write_evqa_csv(tmp_path / "test.csv", EVQA_ROWS)
    preds = write_jsonl(tmp_path / "p.jsonl", [{"data_id": "1", "prediction": "Milan"}])
    result = runner.invoke(
        app,
        [
            "score",
            "evqa",
            "--predictions",
            str(preds),
            "--questions",
            str(csv_path),
            "--bem-model",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path}: not an HF-format BEM checkpoint (no config.json)"
    )


def test_readme_demo_command_gives_hand_worked_scores(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).parent.parent)
    # benchmarks/demo/infoseek: the example in docs/scoring.md scores these files.
    demo = "benchmarks/demo/infoseek/"
    out = tmp_path / "metrics.json"
    result = runner.invoke(
        app,
        [
            "score",
            "infoseek",
            "--predictions",
            demo + "predictions.jsonl",
            "--questions",
            demo + "questions.jsonl",
            "--qtypes",
            demo + "qtypes.jsonl",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    m = json.loads(out.read_text())
    # unseen_question: Thames 1, "about 330 m" in [291.6, 356.4] 1, 1350 not in 1344-1346 0
    # unseen_entity: LC 1, 150-180 vs 170-200 IoU 10/50 0, "Gaudi" != "gaudí" 0
    assert m["unseen_question_score"]["score"] == 66.67
    assert m["unseen_entity_score"]["score"] == 33.33
    assert m["final_score"] == 44.44  # HM(66.67, 33.33)


def test_file_roles_score_as_the_familiar_flags(tmp_path, infoseek_files, monkeypatch):
    """`--file ROLE=PATH` is the same input as `--ROLE PATH`; a required file given neither way
    (and no $RAGVQA_DATA default) is one line naming the option."""
    flags = runner.invoke(app, ["score", "infoseek", *_args(infoseek_files)])
    roles = [
        "score", "infoseek", "--predictions", str(infoseek_files["--predictions"]),
        "--file", f"questions={infoseek_files['--questions']}",
        "--file", f"qtypes={infoseek_files['--qtypes']}",
    ]  # fmt: skip
    by_role = runner.invoke(app, roles)
    assert by_role.exit_code == flags.exit_code == 0, by_role.output
    assert json.loads(by_role.stdout) == json.loads(flags.stdout)
    assert json.loads(by_role.stdout)["unseen_question_score"]["score"] == 100.0
    monkeypatch.delenv("RAGVQA_DATA", raising=False)
    result = runner.invoke(app, roles[:-2])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no qtypes file: pass --qtypes, or set RAGVQA_DATA")
    assert result.stderr.count("\n") == 1


def test_score_names_the_known_benchmarks(tmp_path):
    result = runner.invoke(app, ["score", "infoseak", "--predictions", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "unknown benchmark 'infoseak'" in result.stderr
    assert "did you mean 'infoseek'" in result.stderr and result.stderr.count("\n") == 1
    help_text = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "400"}).stdout
    listed = help_text.split("Benchmark: one of ", 1)[1].split(" (the registered")[0]
    assert {"evqa", "infoseek", "wn-wiki"} <= set(listed.split(", ")) and "--file" in help_text
