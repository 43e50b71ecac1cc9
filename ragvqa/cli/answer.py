"""`ragvqa answer --image q.jpg --question "..."`: one question answered, with its evidence.

Without `--json`: a panel with the answer, the evidence the reader saw (entity, section,
scores) and the other candidates. With `--json`: the whole record (retrieved passages,
rendered prompt, raw output, timings, and `startup`: when each component loaded, in seconds
since the process started) on stdout. Bad input is one line and exit 2. With
`--server URL`, a running `ragvqa serve` answers instead (no model is loaded here).
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
    from rich.markup import escape as escape_markup
    from rich.panel import Panel
    from rich.table import Table

    from ragvqa.cli.common import plain

    def escape(text: str) -> str:  # user and KB text: control characters escaped, no markup
        return escape_markup(plain(text))

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
    trust_remote_code: bool = typer.Option(
        False,
        "--trust-remote-code",
        help="Let the reader run code from its model's repository (a pipeline file cannot).",
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        help="Ask a running `ragvqa serve` at this URL instead of loading models here.",
    ),
) -> None:
    """Answer one question about an image, with the evidence used."""
    with user_errors():
        from ragvqa.pipeline import Pipeline  # the stages' code: not loaded for --help

        text = validate_question(question)
        path = validate_image(image) if image is not None else None
        if server:
            local = {
                "--pipeline": pipeline,
                "--set": overrides,
                "--trust-remote-code": trust_remote_code,
            }
            record = _ask_server(
                server, text, path, prompt, top_k, [k for k, v in local.items() if v]
            )
            _output(record, as_json, show_prompt, None)
            return
        sets = list(overrides) + ([f"retrieval.top_k={top_k}"] if top_k else [])
        with Pipeline.load(pipeline, sets, trust_remote_code=trust_remote_code) as pipe:
            if prompt:
                pipe = pipe.with_prompt(prompt)
            pipe.check()  # unknown components or templates fail before any model loads
            record = pipe.answer(path, text).to_json()
            record["startup"] = pipe.startup.to_json()  # when each component loaded
        _output(record, as_json, show_prompt, pipe.config.get("notice"))


def _output(record: dict[str, Any], as_json: bool, show_prompt: bool, notice: str | None) -> None:
    if as_json:
        typer.echo(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        _panel(record, show_prompt, notice)


def _ask_server(
    server: str,
    question: str,
    image: str | None,
    prompt: str | None,
    top_k: int | None,
    local: list[str],
) -> dict[str, Any]:
    """The record of a running `ragvqa serve`, which answers with its own pipeline (`local`:
    the options given that only a pipeline loaded here would use)."""
    from ragvqa.serve.client import answer_remote  # standard library only

    if local:
        raise UserError(f"{', '.join(local)}: not with --server (its own pipeline answers)")
    return answer_remote(server, question, image, template=prompt, top_k=top_k)
