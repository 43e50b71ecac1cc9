"""`ragvqa answer --image q.jpg --question "..."`: one question answered, with its evidence.

Without `--json`: a panel with the answer, the evidence the reader saw (entity, section,
scores) and the other candidates. With `--json`: the whole record (retrieved passages,
rendered prompt, raw output, timings) on stdout. Bad input is one line and exit 2.
"""

from __future__ import annotations

import json
import time
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
    """The image path when the file is a whole, decodable image of sane size."""
    from PIL import Image

    from ragvqa.eval.bench import check_image

    problem = check_image(str(path))
    if problem is not None:
        raise UserError(problem.split(": ")[0], path=str(path))
    try:
        with Image.open(path) as img:
            img.load()
    except Exception:
        raise UserError("image is truncated or corrupt", path=str(path)) from None
    return str(path)


def answer_one(pipe: Any, image: str, question: str) -> dict[str, Any]:
    """Every stage for one query; returns the JSON record."""
    from ragvqa.types import VQAQuery

    query = VQAQuery("q", question, image_path=image)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    vectors, _ = pipe.encode([query])
    timings["encode"] = time.perf_counter() - started
    started = time.perf_counter()
    result = pipe.search(["q"], vectors)[0]
    timings["search"] = time.perf_counter() - started
    if pipe.config.get("rerank"):
        started = time.perf_counter()
        result = pipe.rerank([query], [result])[0]
        timings["rerank"] = time.perf_counter() - started
    started = time.perf_counter()
    prompt = pipe.render(query, result)
    generation = pipe.generate([prompt])[0]
    timings["generate"] = time.perf_counter() - started
    shown = pipe.evidence_count(prompt, result)
    return {
        "question": question,
        "image": image,
        "answer": pipe.extract(generation.text),
        "raw_output": generation.text,
        "model": generation.model,
        "template": prompt.template,
        "template_hash": prompt.template_hash,
        "evidence_count": shown,
        "retrieved": [
            {
                "rank": rp.rank,
                "score": round(rp.score, 6),
                "passage_id": rp.passage.passage_id,
                "entity": rp.passage.title,
                "section": rp.passage.section_title,
                "page_id": rp.passage.page_id,
                "text": rp.passage.text,
            }
            for rp in result.passages
        ],
        "prompt": [{"role": m.role, "text": m.text} for m in prompt.messages],
        "images_in_prompt": prompt.images(),
        "truncated_passages": prompt.truncated_passages,
        "timings": {k: round(v, 4) for k, v in timings.items()},
    }


def _panel(record: dict[str, Any], show_prompt: bool, notice: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    out = Console()
    table = Table(show_header=True, box=None)
    for column in ("", "entity", "section", "score"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for i, r in enumerate(record["retrieved"]):
        mark = "[bold green]▶[/]" if i < record["evidence_count"] else " "
        table.add_row(mark, escape(r["entity"]), escape(r["section"]), f"{r['score']:.3f}")
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
    image: Path = typer.Option(..., "--image", help="The question's image."),
    question: str = typer.Option(..., "--question", help="The question."),
    pipeline: Path | None = typer.Option(
        None, "--pipeline", help="Pipeline YAML (default: pipelines/default.yaml)."
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
        from ragvqa.pipeline import Pipeline

        text = validate_question(question)
        path = validate_image(image)
        sets = list(overrides) + ([f"retrieval.top_k={top_k}"] if top_k else [])
        pipe = Pipeline.load(pipeline, sets)
        if prompt:
            pipe = pipe.with_prompt(prompt)
        pipe.check()  # unknown components or templates fail before any model loads
        try:
            record = answer_one(pipe, path, text)
        finally:
            pipe.close()
        if as_json:
            typer.echo(json.dumps(record, indent=2, ensure_ascii=False))
        else:
            _panel(record, show_prompt, pipe.config.get("notice"))
