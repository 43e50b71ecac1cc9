"""`ragvqa score infoseek|evqa`: official scores of a prediction file.

Contract (other tools rely on it): the metrics JSON goes to --output (or stdout when it is
omitted), per-example 0/1 scores to --per-example, and a human-readable table to stderr. Bad
input exits with status 2 and one line naming the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ragvqa.cli.common import print_json, stderr, user_errors
from ragvqa.types import MetricResult

app = typer.Typer(
    help="Score predictions exactly as the official InfoSeek and E-VQA scorers do.",
    no_args_is_help=True,
)

PREDICTIONS = typer.Option(..., "--predictions", help="JSONL of {data_id, prediction}.")
OUTPUT = typer.Option(None, "--output", help="Write the metrics JSON here (default: stdout).")
PER_EXAMPLE = typer.Option(None, "--per-example", help="Write {data_id, score} JSONL here.")


def _emit(result: MetricResult, output: Path | None, per_example: Path | None) -> None:
    from ragvqa.eval.predictions import write_per_example
    from ragvqa.io import write_json

    document = {**result.metrics, "coverage": result.coverage}
    if per_example is not None:
        write_per_example(per_example, result.per_example)
    if output is not None:
        write_json(output, document)
    else:
        print_json(document)


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
        from ragvqa.data.infoseek import load_infoseek
        from ragvqa.eval.infoseek_scorer import score_infoseek
        from ragvqa.eval.predictions import load_predictions

        examples = load_infoseek(questions, qtypes)
        result = score_infoseek(load_predictions(predictions), examples)
        _emit(result, output, per_example)
        table = Table(title="InfoSeek (official rules)")
        for column in ("split", "score", "time", "numerical", "string"):
            table.add_column(column, justify="left" if column == "split" else "right")
        for split in ("unseen_question", "unseen_entity"):
            m = result.metrics[f"{split}_score"]
            table.add_row(
                split, *(_fmt(m[k]) for k in ("score", "score_time", "score_num", "score_string"))
            )
        table.add_row("final (harmonic mean)", _fmt(result.metrics["final_score"]), "", "", "")
        stderr.print(table)
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

        examples = load_evqa(questions)
        preds = load_predictions(predictions, int_ids_as_str=True)
        bem = None
        if bem_model is not None:
            from ragvqa.eval.bem import BemModel

            bem = BemModel(bem_model)
        result = score_evqa(preds, examples, bem)
        _emit(result, output, per_example)
        m = result.metrics
        table = Table(title="Encyclopedic-VQA (official rules)")
        table.add_column("group")
        table.add_column("accuracy", justify="right")
        table.add_column("n", justify="right")
        for group in ("single_hop", "two_hop", "all"):
            table.add_row(group, _fmt(m[group]), str(m["counts"][group]))
        for qtype, value in m["by_question_type"].items():
            table.add_row(f"  {qtype}", _fmt(value), str(m["counts"][qtype]))
        stderr.print(table)
        hint = "" if bem is not None else " (pass --bem-model for the official EM + BEM score)"
        stderr.print(f"scoring: {m['scoring']}{hint}", highlight=False)
        stderr.print(_coverage_line(result.coverage), highlight=False)
        if bem is not None and bem.truncated:
            stderr.print(f"BEM inputs longer than 512 tokens trimmed: {bem.truncated}")
