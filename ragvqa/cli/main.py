"""`ragvqa`: the top-level typer app. Command groups are small modules imported here; each
imports heavy libraries only inside its command bodies, so `ragvqa --help` stays fast."""

from __future__ import annotations

import typer

from ragvqa import __version__
from ragvqa.cli.answer import answer_command
from ragvqa.cli.bench import bench_command
from ragvqa.cli.compare import compare_command
from ragvqa.cli.data import app as data_app
from ragvqa.cli.demo import demo_command
from ragvqa.cli.index import app as index_app
from ragvqa.cli.kb import app as kb_app
from ragvqa.cli.prompts import app as prompts_app
from ragvqa.cli.report import report_command
from ragvqa.cli.score import app as score_app
from ragvqa.cli.train import app as train_app

app = typer.Typer(
    name="ragvqa",
    help="Retrieval-augmented visual question answering on encyclopedic knowledge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(score_app, name="score")
app.add_typer(kb_app, name="kb")
app.add_typer(index_app, name="index")
app.add_typer(prompts_app, name="prompts")
app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")
app.command("answer", help="Answer one question about an image, with its evidence.")(answer_command)
app.command("bench", help="Run a benchmark through a pipeline: resumable, cached, scored.")(
    bench_command
)
app.command("demo", help="A tiny offline world: answer and bench end to end.")(demo_command)
app.command("compare", help="Run B vs run A, with paired bootstrap intervals.")(compare_command)
app.command("report", help="A self-contained HTML report of a benchmark run.")(report_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ragvqa {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Retrieval-augmented visual question answering on encyclopedic knowledge."""


def main() -> None:
    """Console-script entry point."""
    app()
