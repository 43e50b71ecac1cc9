"""`ragvqa report RUN`: a self-contained HTML page of a benchmark run (see ragvqa.eval.report).

The page is written to --out (default RUN/report.html) and its path printed on stderr. Bad input,
and an --out that is one of the run's files, exit with status 2 and one line.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ragvqa.cli.common import say, user_errors

DEFAULT_LIMIT = 2000  # some tens of MB of page with embedded photos


def report_command(
    run: Path = typer.Argument(..., help="A finished run directory (predictions.jsonl, metrics)."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the HTML here (default: RUN/report.html)."
    ),
    limit: int = typer.Option(
        DEFAULT_LIMIT, "--limit", min=1, help="At most N questions (every card embeds its image)."
    ),
    all_questions: bool = typer.Option(False, "--all", help="Every question, however many."),
    only: str | None = typer.Option(
        None, "--only", help="Only questions that are correct, wrong, failed or unscored."
    ),
) -> None:
    """One static HTML page: metrics, recall@K plot, and a card per question with filters."""
    with user_errors():
        from ragvqa.eval.report import REPORT, write_report
        from ragvqa.io import check_outputs
        from ragvqa.run import records

        read = (records.PREDICTIONS, records.METRICS, records.CONFIG, records.ENVIRONMENT)
        check_outputs(
            {"--out": out if out is not None else run / REPORT},
            {f"RUN/{name}": run / name for name in (*read, records.TREC)} | {"RUN": run},
        )
        path = write_report(run, out, limit=None if all_questions else limit, only=only)
        say(f"report written to {path}")
