"""`ragvqa prompts list | show | render | diff | validate`: work on prompt templates without a
model. Rendered prompts are printed as JSON (messages with text and image parts)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from ragvqa.cli.common import print_json, stderr, user_errors

app = typer.Typer(help="List, render, diff and validate prompt templates.", no_args_is_help=True)
ROOT = typer.Option(
    None, "--root", help="A prompts/ folder of your own (default: the templates ragvqa ships)."
)


def _library(root: Path | None):
    from ragvqa.prompts import PromptLibrary

    return PromptLibrary(root)


@app.command("list")
def list_(root: Path | None = ROOT) -> None:
    """Every template version with its description."""
    with user_errors():
        library = _library(root)
        table = Table("template", "inputs", "description")
        for ref in library.refs():
            t = library.get(ref)
            table.add_row(ref, ", ".join(t.inputs), t.description)
        stderr.print(table)
        print_json(library.refs())


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="id@version (or id: the latest)."), root: Path | None = ROOT
) -> None:
    """The template file as it is."""
    with user_errors():
        typer.echo(_library(root).get(ref).path.read_text(encoding="utf-8"), nl=False)


def _load_passages(path: Path):
    from ragvqa.io import iter_jsonl
    from ragvqa.types import Passage, RetrievedPassage

    passages = []
    for line, obj in iter_jsonl(path):
        if not isinstance(obj.get("text"), str):
            from ragvqa.errors import UserError

            raise UserError("each passage needs a 'text' string", path=str(path), line=line)
        passage = Passage(
            str(obj.get("passage_id", line)),
            obj["text"],
            title=str(obj.get("title", "")),
            section_title=str(obj.get("section_title", "")),
            page_id=str(obj.get("page_id", "")),
        )
        passages.append(RetrievedPassage(passage, float(obj.get("score", 0.0)), len(passages)))
    return passages


@app.command("render")
def render(
    ref: str = typer.Argument(..., help="id@version (or id: the latest)."),
    question: str = typer.Option("", "--question"),
    passages: Path | None = typer.Option(
        None, "--passages", help="JSONL: text, title, section_title, score."
    ),
    image: str | None = typer.Option(None, "--image", help="Image path placed as an image part."),
    candidates: list[str] = typer.Option([], "--candidate", help="Candidate entity (repeat)."),
    root: Path | None = ROOT,
) -> None:
    """Render a template with these inputs; prints the ChatPrompt as JSON."""
    with user_errors():
        template = _library(root).get(ref)
        prompt = template.render(
            question=question,
            passages=_load_passages(passages) if passages else (),
            image=image,
            candidates=candidates,
        )
        print_json(asdict(prompt))


@app.command("diff")
def diff(
    a: str = typer.Argument(...), b: str = typer.Argument(...), root: Path | None = ROOT
) -> None:
    """Unified diff between two template versions."""
    with user_errors():
        from ragvqa.prompts import diff as unified

        library = _library(root)
        typer.echo(unified(library.get(a), library.get(b)), nl=False)


@app.command("validate")
def validate(
    update_lock: bool = typer.Option(
        False, "--update-lock", help="Lock new versions (locked ones never change)."
    ),
    root: Path | None = ROOT,
) -> None:
    """Check every template: front matter, rendering, parents, and the version lock."""
    with user_errors():
        library = _library(root)
        problems = library.validate()
        for problem in problems:
            stderr.print(f"[red]FAIL[/] {problem}", highlight=False)
        if problems:
            raise typer.Exit(1)
        if update_lock:
            for ref in library.update_lock():
                stderr.print(f"locked {ref}", highlight=False)
        unlocked = [r for r in library.refs() if r not in library.lock()]
        stderr.print(
            f"OK: {len(library.refs())} templates"
            + (f", not locked yet: {', '.join(unlocked)}" if unlocked else ""),
            highlight=False,
        )
        print_json(
            {
                "templates": library.refs(),
                "unlocked": unlocked,
                "lock": json.loads(json.dumps(library.lock())),
            }
        )
