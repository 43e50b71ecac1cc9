"""`ragvqa`: the top-level typer app. Command groups are small modules imported here; each
imports heavy libraries only inside its command bodies, so `ragvqa --help` stays fast.

Two things are settled here once for every command:
- what the heavy libraries print: vLLM's and transformers' logs, torch's C++ warnings and Python
  warnings are hidden unless `ragvqa -v` (warnings) or `-vv` (information) asks for them, set
  through the environment before those libraries are imported, so the engine processes vLLM
  starts inherit it too; a variable the user set stays as it is;
- how `--help` shows options: flags without a type (`--check`, not `--check <bool>`), numbers
  with a range as their type (`--limit <int> [x>=1]`, not `<int range>`), repeatable options as
  their element's type (`--set <str>`, not `<list[str]>`): typer's rich help writes a type for
  every option, flags included.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup, TyperOption

from ragvqa import __version__, logs
from ragvqa.cli.answer import answer_command
from ragvqa.cli.bench import BenchCommand, bench_command
from ragvqa.cli.compare import compare_command
from ragvqa.cli.data import app as data_app
from ragvqa.cli.demo import demo_command
from ragvqa.cli.index import app as index_app
from ragvqa.cli.kb import app as kb_app
from ragvqa.cli.prompts import app as prompts_app
from ragvqa.cli.report import report_command
from ragvqa.cli.score import HELP as SCORE_HELP
from ragvqa.cli.score import ScoreCommand, score_command
from ragvqa.cli.serve import serve_command
from ragvqa.cli.train import app as train_app

# the settings live in ragvqa.logs (the Python API applies them too); the CLI chooses the level
QUIET = logs.QUIET
_USER_SET = logs.USER_SET


def set_verbosity(verbosity: int) -> None:
    """Quiet the heavy libraries (0), or let their warnings (1) or information (2) through."""
    logs.set_verbosity(verbosity, user_set=_USER_SET)


# vLLM's engine processes import it afresh; multiprocessing's spawn may re-run the `ragvqa`
# script first: the level the parent chose is applied here too (`ragvqa.logs`)
logs.quiet_vllm_at_import()


def _option_metavars(command: Any) -> None:
    """Give the options of `command` and its subcommands the type shown in `--help` (see the
    module docstring); an option that names its own metavar keeps it."""
    help_option = command.get_help_option(typer.Context(command))  # made once, then kept
    for param in [*command.params, help_option]:
        if isinstance(param, TyperArgument) and param.type_descriptor.is_list:
            shown = _element_type(param)  # an argument's type ignores metavar: set it here
            param.display_type_rich = lambda ctx, shown=shown: shown
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        described = param.type_descriptor
        if param.is_flag or param.count:
            param.metavar = ""
        elif described.is_choice:
            continue
        elif described.is_ranged:
            param.metavar = f"<{described.ranged_type_name}>"
        elif described.is_list:
            param.metavar = _element_type(param)
    for sub in getattr(command, "commands", {}).values():
        _option_metavars(sub)


def _element_type(param: TyperArgument | TyperOption) -> str:
    """The type of one value of a repeatable parameter: `<str>` for `list[str]` (typer shows
    `<list[str]>`)."""
    return param.display_type(None).replace("<list[", "<").replace("]>", ">")


class RootGroup(TyperGroup):
    """The `ragvqa` command group: fixes how every command's options show in `--help`."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        _option_metavars(self)


app = typer.Typer(
    cls=RootGroup,
    name="ragvqa",
    help="Retrieval-augmented visual question answering on encyclopedic knowledge.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("score", help=SCORE_HELP, cls=ScoreCommand)(score_command)
app.add_typer(kb_app, name="kb")
app.add_typer(index_app, name="index")
app.add_typer(prompts_app, name="prompts")
app.add_typer(train_app, name="train")
app.add_typer(data_app, name="data")
app.command("answer", help="Answer one question about an image, with its evidence.")(answer_command)
app.command(
    "bench", help="Run a benchmark through a pipeline: resumable, cached, scored.", cls=BenchCommand
)(bench_command)
app.command("demo", help="A tiny offline world: answer and bench end to end.")(demo_command)
app.command("compare", help="Run B vs run A, with paired bootstrap intervals.")(compare_command)
app.command("report", help="A self-contained HTML report of a benchmark run.")(report_command)
app.command("serve", help="Serve a pipeline over HTTP: API, web page, prompt playground.")(
    serve_command
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ragvqa {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(
        0,
        "-v",
        "--verbose",
        count=True,
        show_default=False,
        help="Show the warnings of vLLM, transformers and torch (-vv: their information too).",
    ),
) -> None:
    """Retrieval-augmented visual question answering on encyclopedic knowledge."""
    set_verbosity(verbose)


def main() -> None:
    """Console-script entry point. A command that ends while a reader's engine is still
    starting in the background (its question failed first) leaves at once, by `os._exit`, with
    its exit status: see `ragvqa.startup.still_building`."""
    try:
        app()
    except SystemExit as done:
        from ragvqa.startup import still_building

        if still_building():
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise
