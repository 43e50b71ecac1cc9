"""Shared CLI helpers: stderr console, one-line user errors, JSON on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from ragvqa.errors import UserError

stderr = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a `UserError` into one line on stderr and exit status 2 (no traceback)."""
    try:
        yield
    except UserError as exc:
        stderr.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        stderr.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def print_json(obj: Any) -> None:
    """Data goes to stdout, as JSON."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def show_mapping(title: str, data: dict[str, Any], as_json: bool) -> None:
    """A mapping as JSON on stdout (`--json`), or as a two-column table on stderr with nested
    mappings spread over dotted keys ("faiss.kind") and integers grouped by thousands."""
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in _flat_items(data):
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        table.add_row(key, "-" if value is None else str(shown))
    stderr.print(table)


def _flat_items(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            items += _flat_items(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items
