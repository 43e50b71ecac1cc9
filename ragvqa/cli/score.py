"""`ragvqa score infoseek|evqa`: official scores of a prediction file.

Contract (other tools rely on it): the metrics JSON goes to --output (or stdout when it is
omitted), per-example 0/1 scores to --per-example, and a human-readable table to stdout when
the JSON went to --output (tab-separated rows off a terminal), else to stderr, so stdout is the
JSON alone; the coverage and scoring notes go to stderr. Bad input exits with status 2 and one
line naming the file and line.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from ragvqa.cli.common import print_json, show_table, stderr, user_errors

app = typer.Typer(
    help="Score predictions exactly as the official InfoSeek and E-VQA scorers do.",
    no_args_is_help=True,
)

PREDICTIONS = typer.Option(..., "--predictions", help="JSONL of {data_id, prediction}.")
OUTPUT = typer.Option(None, "--output", help="Write the metrics JSON here (default: stdout).")
PER_EXAMPLE = typer.Option(None, "--per-example", help="Write {data_id, score} JSONL here.")


def _emit(
    metrics: dict[str, Any],
    coverage: dict[str, Any],
    scores: tuple[list[str], list[int]],
    output: Path | None,
    per_example: Path | None,
) -> None:
    """Metrics and coverage to --output or stdout; (ids, 0/1 scores) to --per-example."""
    from ragvqa.eval.predictions import write_score_columns
    from ragvqa.io import write_json

    document = {**metrics, "coverage": coverage}
    if per_example is not None:
        write_score_columns(per_example, *scores)
    if output is not None:
        write_json(output, document)
    else:
        print_json(document)


def _check_paths(output: Path | None, per_example: Path | None, **inputs: Path) -> None:
    """Refuse, before scoring, an output that is one of the inputs (or the other output)."""
    from ragvqa.io import check_outputs

    check_outputs(
        {"--output": output, "--per-example": per_example},
        {f"--{name.replace('_', '-')}": path for name, path in inputs.items()},
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a whole benchmark is read and scored: its records
    form no cycles, and collections walking ever more live records cost ~10% of the run."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _coverage_line(coverage: dict[str, Any]) -> str:
    line = f"scored {coverage['scored']} of {coverage['predictions']} predictions"
    notes = []
    if coverage["unknown_ids"]:
        notes.append(f"{coverage['unknown_ids']} with unknown ids dropped")
    if coverage["duplicate_ids"]:
        notes.append(f"{coverage['duplicate_ids']} ids predicted more than once (each counted)")
    if coverage["missing_predictions"]:
        notes.append(
            f"{coverage['missing_predictions']} of {coverage['questions']} questions have no "
            "prediction (not counted)"
        )
    return line + ("; " + "; ".join(notes) if notes else "")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value}"


@app.command("infoseek")
def infoseek(
    predictions: Path = PREDICTIONS,
    questions: Path = typer.Option(..., "--questions", help="Official infoseek_*.jsonl."),
    qtypes: Path = typer.Option(..., "--qtypes", help="Official infoseek_*_qtype.jsonl."),
    output: Path | None = OUTPUT,
    per_example: Path | None = PER_EXAMPLE,
) -> None:
    """InfoSeek: per-split accuracy and the harmonic-mean final score (official rules)."""
    with user_errors():
        from ragvqa.data.infoseek import load_answer_key
        from ragvqa.eval.infoseek_scorer import score_answer_key
        from ragvqa.eval.predictions import read_predictions

        inputs = {"predictions": predictions, "questions": questions, "qtypes": qtypes}
        _check_paths(output, per_example, **inputs)
        with _gc_paused():
            key = load_answer_key(questions, qtypes)
            result = score_answer_key(*read_predictions(predictions), key)
        _emit(result.metrics, result.coverage, (result.ids, result.scores), output, per_example)
        from rich.table import Table  # for the table only

        table = Table(title="InfoSeek (official rules)")
        for column in ("split", "score", "time", "numerical", "string"):
            table.add_column(column, justify="left" if column == "split" else "right")
        for split in ("unseen_question", "unseen_entity"):
            m = result.metrics[f"{split}_score"]
            table.add_row(
                split, *(_fmt(m[k]) for k in ("score", "score_time", "score_num", "score_string"))
            )
        table.add_row("final (harmonic mean)", _fmt(result.metrics["final_score"]), "", "", "")
        show_table(table, log=output is None)  # stdout: the JSON's when --output is not given
        stderr.print(_coverage_line(result.coverage), highlight=False)


@app.command("evqa")
def evqa(
    predictions: Path = PREDICTIONS,
    questions: Path = typer.Option(..., "--questions", help="Official E-VQA CSV (test.csv)."),
    output: Path | None = OUTPUT,
    per_example: Path | None = PER_EXAMPLE,
    bem_model: Path | None = typer.Option(
        None, "--bem-model", help="HF-format BEM checkpoint; without it: exact match only."
    ),
) -> None:
    """Encyclopedic-VQA: single-hop, two-hop, all and per question type (official rules)."""
    with user_errors():
        from ragvqa.data.evqa import load_evqa
        from ragvqa.eval.evqa_scorer import score_evqa
        from ragvqa.eval.predictions import load_predictions

        _check_paths(output, per_example, predictions=predictions, questions=questions)
        examples = load_evqa(questions)
        preds = load_predictions(predictions, int_ids_as_str=True)
        bem = None
        if bem_model is not None:
            from ragvqa.eval.bem import BemModel

            bem = BemModel(bem_model)
        result = score_evqa(preds, examples, bem)
        scores = ([s.example_id for s in result.per_example], [s.score for s in result.per_example])
        _emit(result.metrics, result.coverage, scores, output, per_example)
        m = result.metrics
        from rich.table import Table  # for the table only

        table = Table(title="Encyclopedic-VQA (official rules)")
        table.add_column("group")
        table.add_column("accuracy", justify="right")
        table.add_column("n", justify="right")
        for group in ("single_hop", "two_hop", "all"):
            table.add_row(group, _fmt(m[group]), str(m["counts"][group]))
        for qtype, value in m["by_question_type"].items():
            table.add_row(f"  {qtype}", _fmt(value), str(m["counts"][qtype]))
        show_table(table, log=output is None)  # stdout: the JSON's when --output is not given
        hint = "" if bem is not None else " (pass --bem-model for the official EM + BEM score)"
        stderr.print(f"scoring: {m['scoring']}{hint}", highlight=False)
        stderr.print(_coverage_line(result.coverage), highlight=False)
        if bem is not None and bem.truncated:
            stderr.print(f"BEM inputs longer than 512 tokens trimmed: {bem.truncated}")
