"""`ragvqa report RUN`: a self-contained HTML page of a benchmark run (see ragvqa.eval.report).

The page is written to --out (default RUN/report.html) and its path printed on stderr. Bad input
exits with status 2 and one line.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ragvqa.cli.common import stderr, user_errors


def report_command(
    run: Path = typer.Argument(..., help="A finished run directory (predictions.jsonl, metrics)."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the HTML here (default: RUN/report.html)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Only the first N questions (keeps big runs' pages small)."
    ),
) -> None:
    """One static HTML page: metrics, recall@K plot, and a card per question with filters."""
    with user_errors():
        from ragvqa.eval.report import write_report

        path = write_report(run, out, limit=limit)
        stderr.print(f"report written to {path}", highlight=False, soft_wrap=True)
