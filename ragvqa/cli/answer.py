"""`ragvqa answer --image q.jpg --question "..."`: one question answered, with its evidence.

Without `--json`: on stdout, a panel with the answer, the evidence the reader saw (entity,
section, scores), the other candidates, the start-up (loading the components: most of a cold
answer) and the stage times (nothing cut: long cells fold); off a terminal, the same as plain
lines. The pipeline's notice goes to stderr. With `--json`: the whole record (retrieved
passages, rendered prompt, raw output, `timings` with `startup` apart from the stages, and
`startup`: when each component loaded, in seconds since the process started) on stdout, and
nothing else there. On a terminal a spinner says what is
going on while the models load ("starting reader... 12s"). Bad input is one line and exit 2.
With `--server URL`, a running `ragvqa serve` answers instead (no model is loaded here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from ragvqa.cli.common import stderr, user_errors
from ragvqa.errors import UserError
from ragvqa.questions import validate_image, validate_question  # also re-exported


def startup_line(record: dict[str, Any]) -> str | None:
    """The panel's start-up line, "start-up 75.31s: before_load 6.02s, encoder 3.10s, ...,
    reader 52.00s (in the background)": the record's start-up figure and each component's load
    (None for a record without one: a running server's)."""
    seconds = record.get("timings", {}).get("startup")
    if not isinstance(seconds, int | float):
        return None
    parts = []
    for name, span in (record.get("startup") or {}).items():
        if span["seconds"] < 0.005:  # shown to the hundredth: no "kb 0.00s"
            continue
        background = " (in the background)" if span.get("thread") != "MainThread" else ""
        parts.append(f"{name} {span['seconds']:.2f}s{background}")
    return f"start-up {seconds:.2f}s" + (f": {', '.join(parts)}" if parts else "")


def _phase(pipe: Any, clock: dict[str, Any]) -> str:
    """What a cold answer is doing, for the spinner: loading the pipeline, retrieving (while the
    reader's engine starts in the background), starting the reader, answering."""
    if pipe is None:
        return "loading the pipeline"
    loaded = pipe.startup.to_json()
    if "reader" in loaded:
        return "answering"
    if "search" in clock or pipe.retrieval_mode != "index":
        return "starting reader"
    if hasattr(pipe, "_reader_start"):  # start_reader() began it in the background
        return "retrieving while the reader starts"
    return "retrieving" if "encoder" in loaded else "loading models"


def _panel(record: dict[str, Any], show_prompt: bool, notice: str | None) -> None:
    """The answer on stdout: a panel on a terminal (nothing cut: long cells fold), plain lines
    off it; the pipeline's notice on stderr."""
    from rich.markup import escape as escape_markup

    from ragvqa.cli.common import plain, result_console

    console = result_console()
    if console is None:
        sys.stdout.write("".join(line + "\n" for line in _lines(record, show_prompt)))
        sys.stdout.flush()
    else:
        _draw(console, record, show_prompt)
    if notice:
        stderr.print(f"[yellow]note:[/] {escape_markup(plain(notice))}")


def _timing(record: dict[str, Any]) -> str:
    stages = {k: v for k, v in record["timings"].items() if k != "startup"}
    return "  ".join(f"{k} {v:.2f}s" for k, v in stages.items())


def _draw(console: Any, record: dict[str, Any], show_prompt: bool) -> None:
    """The panel, on a terminal: question, answer, evidence (▶ = read), model and template,
    start-up and stage times; with `show_prompt`, a panel per prompt message."""
    from rich.markup import escape as escape_markup
    from rich.panel import Panel
    from rich.table import Table

    from ragvqa.cli.common import plain

    def escape(text: str) -> str:  # user and KB text: control characters escaped, no markup
        return escape_markup(plain(text))

    table = Table(show_header=True, box=None)
    for column in ("", "entity", "section", "score"):
        justify = "right" if column == "score" else "left"
        table.add_column(column, justify=justify, overflow="fold")
    read = set(record["evidence"])
    for r in record["retrieved"]:
        mark = "[bold green]▶[/]" if r["passage_id"] in read else " "
        table.add_row(mark, escape(r["title"]), escape(r["section"]), f"{r['score']:.3f}")
    title = f"[bold]{escape(record['answer']) or '(no answer)'}[/]"
    body = Table.grid(padding=(0, 1))
    body.add_column(overflow="fold")
    body.add_row(f"[dim]question[/] {escape(record['question'])}")
    body.add_row(title)
    body.add_row("[dim]evidence (▶ = read by the model)[/]")
    body.add_row(table)
    body.add_row(f"[dim]{escape(record['model'])} · {escape(record['template'])}[/]")
    startup = startup_line(record)
    if startup:
        body.add_row(f"[dim]{escape(startup)}[/]")
    body.add_row(f"[dim]{_timing(record)}[/]")
    console.print(Panel(body, title="ragvqa answer", expand=False))
    if show_prompt:
        for message in record["prompt"]:
            console.print(Panel(escape(message["text"]), title=message["role"], expand=False))


def _lines(record: dict[str, Any], show_prompt: bool) -> list[str]:
    """The panel as plain lines, off a terminal: a line per field ("answer: Paris"), an evidence
    passage per line (read mark, entity, section, score: tab-separated), the start-up and stage
    times; user and KB text escaped, never cut."""
    from ragvqa.cli.common import plain

    read = set(record["evidence"])
    lines = [
        "ragvqa answer",
        f"question: {plain(record['question'])}",
        f"answer: {plain(record['answer']) or '(no answer)'}",
        "evidence (▶ = read by the model):",
    ]
    for r in record["retrieved"]:
        mark = "▶" if r["passage_id"] in read else ""
        lines.append(f"{mark}\t{plain(r['title'])}\t{plain(r['section'])}\t{r['score']:.3f}")
    lines += [f"model: {plain(record['model'])}", f"template: {plain(record['template'])}"]
    startup = startup_line(record)
    if startup:
        lines.append(plain(startup))
    lines.append(f"time: {_timing(record)}")
    if show_prompt:
        lines += [f"prompt {plain(m['role'])}: {plain(m['text'])}" for m in record["prompt"]]
    return lines


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
        record, notice = _answer_here(pipeline, sets, trust_remote_code, prompt, path, text)
        _output(record, as_json, show_prompt, notice)


def _answer_here(
    pipeline: Path | None,
    sets: list[str],
    trust_remote_code: bool,
    prompt: str | None,
    image: str | None,
    question: str,
) -> tuple[dict[str, Any], str | None]:
    """The record of the question answered by a pipeline loaded here, and its notice; a
    spinner on a terminal meanwhile. The record's `timings` hold `startup` (loading the
    components, from the process's start) apart from the stages (`with_startup`)."""
    from ragvqa.progress import Spinner
    from ragvqa.startup import StageClock, since_start, with_startup
    from ragvqa.types import VQAQuery

    clock = StageClock()
    loaded: list[Any] = [None]
    with Spinner(lambda: _phase(loaded[-1], clock)):
        from ragvqa.pipeline import Pipeline  # the stages' code: not loaded for --help

        with Pipeline.load(pipeline, sets, trust_remote_code=trust_remote_code) as pipe:
            if prompt:
                pipe = pipe.with_prompt(prompt)
            pipe.check()  # unknown components or templates fail before any model loads
            loaded.append(pipe)
            query = VQAQuery("q", question, image_path=image)
            answer = pipe.answer_batch([query], timings=clock)[0]
            if answer.error is not None:
                raise UserError(answer.error)
            record = answer.to_json()
            record["startup"] = pipe.startup.to_json()  # when each component loaded
            split = with_startup(clock, pipe.startup, since=0.0, until=since_start())
    stages = {  # one question: its share of a stage is the stage (less its start-up)
        k: split[k]["seconds"] if k in split and k != "generate" else v
        for k, v in record["timings"].items()
    }
    record["timings"] = {"startup": split["startup"]["seconds"], **stages}
    return record, pipe.config.get("notice")


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
