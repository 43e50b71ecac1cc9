"""Shared CLI helpers: stderr console, one-line user errors, results on stdout (JSON, tables),
and the one way user-provided text reaches the terminal.

Results go to stdout and messages to stderr, in every command: `print_json` (`--json`),
`show_table` / `show_mapping` (a result as a table) and `show_line` (a result's line: a verdict,
a count) write stdout; `say`, notes, progress and errors write stderr. When `--json` puts a
result on stdout, its human view goes to stderr (`log=True`), so stdout is the JSON alone. A
result table never cuts a cell: on a terminal its long cells fold onto more lines, and off a
terminal (a pipe, a file) it is written as tab-separated rows, one row a line, so
`ragvqa prompts list | grep NAME` finds the whole id and `cut -f1` takes the first column.

Text from users and their files (paths, questions, answers, KB passages, names) is never parsed
as rich markup (`x[bold red]y.jsonl` is shown as it is, `[/]` does not crash) and its control
characters and ANSI escapes are shown escaped (`\x1b[31m`), so a file cannot recolour, clear or
rewrite the user's terminal and an error stays on one line. `shown()` and `say()` do both; files
and JSON on stdout keep the text exact.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from ragvqa.errors import UserError
from ragvqa.io import WRITE_ERRORS
from ragvqa.logs import plain  # also re-exported: the one escaping of user text

stderr = Console(stderr=True)


def shown(value: Any, style: str = "") -> Text:
    """User text as a rich renderable (table cell, title, panel body): escaped by `plain`,
    never parsed as markup."""
    return Text(plain(value), style=style)


def say(message: Any, style: str = "") -> None:
    """One line of text on stderr, as it is (no markup, no highlighting, no wrapping)."""
    stderr.print(shown(message, style), soft_wrap=True, highlight=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `UserError` into one line on stderr and exit status 2 (no traceback); so too a
    full disk, quota or read-only file system met outside the atomic writers."""
    try:
        yield
    except UserError as exc:
        _error(str(exc))
        raise typer.Exit(2) from None
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}cannot write ({exc.strerror or exc})")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        say("interrupted", "yellow")
        raise typer.Exit(130) from None


def _error(message: str) -> None:
    stderr.print(Text.assemble(("error: ", "bold red"), plain(message)), soft_wrap=True)


def print_json(obj: Any) -> None:
    """Data goes to stdout, as JSON."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def show_table(
    table: Table, whole: Sequence[int] = (0,), *, titled: bool = False, log: bool = False
) -> None:
    """A result table on stdout, nothing in it cut. On a terminal: the rich table, every column
    folding a long cell onto more lines (never an ellipsis), and the `whole` columns (the ids,
    names or keys a user pastes: the first by default) kept on one line when they fit in half
    the width. Off a terminal (a pipe, a file): tab-separated rows, the header first when the
    table shows one, each row on one line (a tab or line break inside a cell is written `\\t`,
    `\\n`); the title is left out unless `titled` (a result of several tables, such as
    `compare`'s: the title on a line of its own first). `log`: on stderr instead, the title
    kept (the human view beside a result that `--json` puts on stdout)."""
    file = sys.stderr if log else sys.stdout
    if _stderr_is_terminal() if log else _stdout_is_terminal():
        console = Console(file=file)
        for number, column in enumerate(table.columns):
            column.overflow = "fold"
            longest = max((cell_len(_cell_text(c)) for c in column.cells), default=0)
            if number in whole and column.width is None and longest <= console.width // 2:
                column.width = max(longest, cell_len(_cell_text(column.header)))
        console.print(table)
        return
    rows = [[column.header for column in table.columns]] if table.show_header else []
    rows += [list(cells) for cells in zip(*(c.cells for c in table.columns), strict=True)]
    lines = ["\t".join(_cell_text(cell) for cell in row) for row in rows]
    if (titled or log) and table.title:
        lines.insert(0, _cell_text(table.title))
    file.write("".join(line + "\n" for line in lines))
    file.flush()


def show_line(message: Any, style: str = "", *, log: bool = False) -> None:
    """One line of a result on stdout (a verdict, a count, which runs were compared), as it is:
    no markup, control characters escaped, never wrapped; `style` on a terminal only (a `Text`
    keeps its own). `log`: on stderr instead, as `say`."""
    text = message if isinstance(message, Text) else shown(message, style)
    if log:
        stderr.print(text, soft_wrap=True, highlight=False)
    elif _stdout_is_terminal():
        Console(file=sys.stdout).print(text, soft_wrap=True, highlight=False)
    else:
        sys.stdout.write(plain(text.plain) + "\n")
        sys.stdout.flush()


def result_console() -> Console | None:
    """A console for a result drawn on stdout (a panel) when stdout is a terminal; None off a
    terminal, where a result is written as plain lines instead. Its renderables must fold
    their long cells (`overflow="fold"`): the console never cuts what it prints."""
    return Console(file=sys.stdout) if _stdout_is_terminal() else None


def _stdout_is_terminal() -> bool:
    return _is_terminal(sys.stdout)


def _stderr_is_terminal() -> bool:
    return _is_terminal(sys.stderr)


def _is_terminal(file: Any) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _cell_text(cell: RenderableType) -> str:
    """A table cell as one line of plain text: markup of a str cell applied as rich would (no
    styles kept), control characters escaped."""
    if isinstance(cell, str):
        text = Text.from_markup(cell).plain
    elif isinstance(cell, Text):
        text = cell.plain
    else:  # another renderable: rendered wide, its lines joined
        buffer = io.StringIO()
        Console(file=buffer, width=100_000, color_system=None).print(cell)
        text = " ".join(line.strip() for line in buffer.getvalue().splitlines())
    return plain(text)


def show_mapping(title: str, data: dict[str, Any], as_json: bool) -> None:
    """A mapping as JSON on stdout (`--json`), or as a two-column table on stdout (`show_table`)
    with nested mappings spread over dotted keys ("faiss.kind") and integers grouped by
    thousands."""
    if as_json:
        print_json(data)
        return
    table = Table(title=shown(title), show_header=False)
    for key, value in _flat_items(data):
        number = isinstance(value, int) and not isinstance(value, bool)
        cell = "-" if value is None else f"{value:,}" if number else value
        table.add_row(shown(key), shown(cell))
    show_table(table)


def _flat_items(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            items += _flat_items(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


class BenchmarkCommand(TyperCommand):
    """A command with a `benchmark` argument (`bench`, `score`): its help names every
    registered benchmark, read from the registry when the help is shown (so `ragvqa` itself
    starts without reading the plug-ins' entry points)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from ragvqa.benchmarks import benchmark_names

        names = ", ".join(benchmark_names())
        for param in self.params:
            if param.name == "benchmark":
                param.help = f"Benchmark: one of {names} (the registered plug-ins)."
        super().format_help(ctx, formatter)
