"""`ragvqa answer --image q.jpg --question "..."`: one question answered, with its evidence.

Without `--json`: a panel with the answer, the evidence the reader saw (entity, section,
scores) and the other candidates. With `--json`: the whole record (retrieved passages,
rendered prompt, raw output, timings) on stdout. Bad input is one line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ragvqa.cli.common import stderr, user_errors
from ragvqa.errors import UserError


def validate_question(question: str) -> str:
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("the question is not valid UTF-8 text") from None
    if not question.strip():
        raise UserError("the question is empty")
    return question.strip()


def validate_image(path: Path) -> str:
    """The image path when the file is a whole, decodable image of sane size (checked before
    any model loads)."""
    from PIL import Image

    from ragvqa.data.images import check_image

    problem = check_image(str(path))
    if problem is not None:
        raise UserError(problem.split(": ")[0], path=str(path))
    try:
        with Image.open(path) as img:
            img.load()
    except Exception:
        raise UserError("image is truncated or corrupt", path=str(path)) from None
    return str(path)


def _panel(record: dict[str, Any], show_prompt: bool, notice: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    out = Console()
    table = Table(show_header=True, box=None)
    for column in ("", "entity", "section", "score"):
        table.add_column(column, justify="right" if column == "score" else "left")
    read = set(record["evidence"])
    for r in record["retrieved"]:
        mark = "[bold green]▶[/]" if r["passage_id"] in read else " "
        table.add_row(mark, escape(r["title"]), escape(r["section"]), f"{r['score']:.3f}")
    title = f"[bold]{escape(record['answer']) or '(no answer)'}[/]"
    body = Table.grid(padding=(0, 1))
    body.add_row(f"[dim]question[/] {escape(record['question'])}")
    body.add_row(title)
    body.add_row("[dim]evidence (▶ = read by the model)[/]")
    body.add_row(table)
    timing = "  ".join(f"{k} {v:.2f}s" for k, v in record["timings"].items())
    body.add_row(f"[dim]{escape(record['model'])} · {escape(record['template'])}[/]")
    body.add_row(f"[dim]{timing}[/]")
    out.print(Panel(body, title="ragvqa answer", expand=False))
    if show_prompt:
        for message in record["prompt"]:
            out.print(Panel(escape(message["text"]), title=message["role"], expand=False))
    if notice:
        stderr.print(f"[yellow]note:[/] {escape(notice)}")


def answer_command(
    image: Path | None = typer.Option(
        None, "--image", help="The question's image (none: a text-only question)."
    ),
    question: str = typer.Option(..., "--question", help="The question."),
    pipeline: Path | None = typer.Option(
        None, "--pipeline", help="Pipeline YAML (default: the shipped default.yaml)."
    ),
    prompt: str | None = typer.Option(None, "--prompt", help="Answer template id@version."),
    top_k: int | None = typer.Option(None, "--top-k", min=1, help="Passages retrieved."),
    as_json: bool = typer.Option(False, "--json", help="The whole record as JSON on stdout."),
    show_prompt: bool = typer.Option(
        False, "--show-prompt", help="Also print the rendered prompt."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Pipeline override a.b=c (repeatable)."),
) -> None:
    """Answer one question about an image, with the evidence used."""
    with user_errors():
        from ragvqa.pipeline import Pipeline  # the stages' code: not loaded for --help

        text = validate_question(question)
        path = validate_image(image) if image is not None else None
        sets = list(overrides) + ([f"retrieval.top_k={top_k}"] if top_k else [])
        with Pipeline.load(pipeline, sets) as pipe:
            if prompt:
                pipe = pipe.with_prompt(prompt)
            pipe.check()  # unknown components or templates fail before any model loads
            record = pipe.answer(path, text).to_json()
        if as_json:
            typer.echo(json.dumps(record, indent=2, ensure_ascii=False))
        else:
            _panel(record, show_prompt, pipe.config.get("notice"))
