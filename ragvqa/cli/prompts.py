"""`ragvqa prompts list | show | render | diff | new | validate`: work on prompt templates
without a model.

Results go to stdout: the list of templates (a table, tab-separated rows in a pipe, JSON with
`--json`), a template file (`show`), a diff, a rendered prompt (JSON, or readable with `--text`),
and with `--json` what `validate` and `new` did; verdicts and notes go to stderr. `new` makes
the next version of a template (see `ragvqa.prompt_versions`), locks it and writes its golden
render; `validate --update-golden` writes the golden renders the test suite checks every
version against.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from ragvqa.cli.common import print_json, say, show_table, shown, stderr, user_errors

app = typer.Typer(
    help="List, render, diff, version and validate prompt templates.", no_args_is_help=True
)
ROOT = typer.Option(
    None, "--root", help="A prompts/ folder of your own (default: the templates ragvqa ships)."
)
JSON = typer.Option(False, "--json", help="Print JSON on stdout.")
GOLDEN = typer.Option(
    None,
    "--golden",
    help="Folder of golden renders (default: tests/golden/prompts beside the prompts folder).",
)


def _library(root: Path | None):
    from ragvqa.prompts import PromptLibrary

    return PromptLibrary(root)


@app.command("list")
def list_(root: Path | None = ROOT, as_json: bool = JSON) -> None:
    """Every template version (id@version, as --prompt takes it) with its inputs and description:
    a table on stdout (tab-separated rows in a pipe), or with --json the list of ids."""
    with user_errors():
        library = _library(root)
        if as_json:
            print_json(library.refs())
            _broken(library)
            return
        table = Table("template", "inputs", "description", title="prompt templates")
        for ref in library.refs():
            t = library.get(ref)
            table.add_row(shown(ref), shown(", ".join(t.inputs)), shown(t.description))
        show_table(table)
        _broken(library)


def _broken(library) -> None:
    """Each template file that does not parse as an error line, after the usable ones are
    listed; exit status 2 when there is one."""
    for problem in library.broken.values():
        say(f"error: {problem}", "red")
    if library.broken:
        raise typer.Exit(2)


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="id@version (or id: the latest)."), root: Path | None = ROOT
) -> None:
    """The template file as it is."""
    with user_errors():
        typer.echo(_library(root).get(ref).path.read_text(encoding="utf-8"), nl=False)


def _load_passages(path: Path):
    from ragvqa.errors import UserError
    from ragvqa.io import iter_jsonl
    from ragvqa.types import Passage, RetrievedPassage

    passages = []
    for line, obj in iter_jsonl(path):
        if not isinstance(obj.get("text"), str):
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


def chat_text(prompt) -> str:
    """A rendered prompt for reading: each message's role on a line of its own, then its text,
    images as "[image: PATH]" where they are placed."""
    from ragvqa.types import ImagePart

    blocks = []
    for message in prompt.messages:
        parts = [
            f"[image: {p.image}]" if isinstance(p, ImagePart) else p.text for p in message.parts
        ]
        blocks.append(f"── {message.role} ──\n" + "\n".join(parts))
    return "\n\n".join(blocks) + "\n"


@app.command("render")
def render(
    ref: str = typer.Argument(..., help="id@version (or id: the latest)."),
    question: str = typer.Option("", "--question"),
    passages: Path | None = typer.Option(
        None, "--passages", help="JSONL: text, title, section_title, score."
    ),
    image: str | None = typer.Option(None, "--image", help="Image path placed as an image part."),
    candidates: list[str] = typer.Option([], "--candidate", help="Candidate entity (repeat)."),
    as_text: bool = typer.Option(
        False, "--text", help="Print the chat for reading (roles, then text) instead of JSON."
    ),
    root: Path | None = ROOT,
) -> None:
    """Render a template with these inputs; prints the ChatPrompt as JSON (or, with --text,
    as the chat a reader sees)."""
    with user_errors():
        template = _library(root).get(ref)
        prompt = template.render(
            question=question,
            passages=_load_passages(passages) if passages else (),
            image=image,
            candidates=candidates,
        )
        if as_text:
            typer.echo(chat_text(prompt), nl=False)
        else:
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


@app.command("new")
def new(
    template_id: str = typer.Argument(..., help="The template id (answer/evidence_short)."),
    from_ref: str | None = typer.Option(
        None, "--from", help="The version to start from, id@version (default: the latest)."
    ),
    text: Path | None = typer.Option(
        None, "--text", help="The new template: a whole file, or its Jinja2 blocks alone."
    ),
    edit: bool = typer.Option(False, "--edit", help="Edit the new template in $EDITOR first."),
    message: str | None = typer.Option(
        None, "--message", "-m", help="Changelog line: what changed (default: 'made from ...')."
    ),
    root: Path | None = ROOT,
    golden: Path | None = GOLDEN,
    as_json: bool = JSON,
) -> None:
    """Make the next version of a template from an existing one: front matter set (version,
    parent, changelog), checked, locked, with its golden render; never over an existing file."""
    with user_errors():
        from ragvqa.errors import UserError
        from ragvqa.io import open_text
        from ragvqa.prompt_versions import default_golden_folder, new_version, update_golden

        if text is not None and edit:
            raise UserError("--text and --edit: give one")
        content = None
        if text is not None:
            with open_text(text) as fh:
                content = fh.read()
        elif edit:
            content = _edited(root, from_ref or template_id)
        try:
            made = new_version(root, template_id, content, from_ref=from_ref, changelog=message)
        except UserError:
            if edit and content is not None:
                _keep_draft(content)
            raise
        say(f"wrote {made.path} ({made.ref}, parent {made.parent}) and locked it")
        folder = golden or default_golden_folder(root)
        if golden is not None or folder.is_dir():
            for ref, done in update_golden(_library(root), folder, [made.ref]).items():
                say(f"golden render {done}: {ref} in {folder}")
        if as_json:
            print_json({"ref": made.ref, "path": str(made.path), "sha256": made.sha256})


def _edited(root: Path | None, ref: str) -> str:
    """The file of `ref`, as the user left it in $VISUAL or $EDITOR (a copy is edited)."""
    import os
    import shlex
    import subprocess
    import tempfile

    from ragvqa.errors import UserError

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise UserError("--edit needs an editor: set EDITOR (or use --text FILE)")
    source = _library(root).get(ref).path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="ragvqa-edit-") as tmp:
        path = Path(tmp) / f"{ref.replace('/', '_')}.j2"
        path.write_text(source, encoding="utf-8")
        try:
            status = subprocess.call([*shlex.split(editor), str(path)])
        except OSError as exc:
            raise UserError(f"cannot start the editor {editor!r} ({exc.strerror})") from None
        if status != 0:
            raise UserError(f"the editor {editor!r} exited with status {status}; nothing written")
        return path.read_text(encoding="utf-8")


def _keep_draft(content: str) -> None:
    """An edited template that was refused is kept in ./prompt-draft[-N].j2, never lost."""
    n, path = 1, Path("prompt-draft.j2")
    while path.exists():
        n += 1
        path = Path(f"prompt-draft-{n}.j2")
    path.write_text(content, encoding="utf-8")
    say(f"your edit is kept in {path}: fix it and pass it with --text {path}")


@app.command("validate")
def validate(
    update_lock: bool = typer.Option(
        False, "--update-lock", help="Lock new versions (locked ones never change)."
    ),
    update_golden: bool = typer.Option(
        False,
        "--update-golden",
        help="Write the golden renders that are missing or differ (the test suite checks them).",
    ),
    golden: Path | None = GOLDEN,
    root: Path | None = ROOT,
    as_json: bool = JSON,
) -> None:
    """Check every template: front matter, rendering, parents, the version lock, and the golden
    renders where there is a golden folder (--update-golden writes the missing and changed)."""
    with user_errors():
        from ragvqa.errors import UserError
        from ragvqa.prompt_versions import default_golden_folder, golden_problem
        from ragvqa.prompt_versions import update_golden as write_golden

        library = _library(root)
        problems = library.validate()
        folder = golden or default_golden_folder(root)
        if not update_golden and (golden is not None or folder.is_dir()):
            problems += [p for r in library.refs() if (p := golden_problem(library, folder, r))]
        for problem in problems:
            stderr.print(shown("FAIL", "red") + shown(f" {problem}"), soft_wrap=True)
        if problems:
            raise typer.Exit(1)
        if update_lock:
            for ref in library.update_lock():
                say(f"locked {ref}")
        if update_golden:
            if golden is None and not folder.is_dir():
                raise UserError(f"no golden folder at {folder}: pass --golden DIR")
            for ref, done in write_golden(library, folder).items():
                say(f"golden render {done}: {ref} in {folder}")
        unlocked = [r for r in library.refs() if r not in library.lock()]
        say(
            f"OK: {len(library.refs())} templates"
            + (f", not locked yet: {', '.join(unlocked)}" if unlocked else "")
        )
        if as_json:
            print_json(
                {
                    "templates": library.refs(),
                    "unlocked": unlocked,
                    "lock": json.loads(json.dumps(library.lock())),
                }
            )
