"""`ragvqa serve --pipeline P.yaml`: load a pipeline once and serve it over HTTP, with a web page
and a prompt playground (see docs/serving.md). The server's code (FastAPI, uvicorn) loads only
when the command runs, so `ragvqa --help` stays fast. The server's options are the fields of
`ragvqa.serve.settings.Settings` (`--batch-window-ms` is the old name of `--window-ms`;
`--max-request-mb` sets `max_request_bytes`; `--prompts` sets `can_save`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ragvqa.cli.common import user_errors
from ragvqa.schema.options import from_options, option
from ragvqa.serve.settings import Settings


def serve_command(
    pipeline: Path | None = typer.Option(
        None, "--pipeline", help="Pipeline YAML (default: the shipped default.yaml)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    prompts: Path | None = typer.Option(
        None,
        "--prompts",
        help="A prompts/ folder to read templates from and save new versions into "
        "(default: the shipped templates, read-only).",
    ),
    window_ms: float = option(Settings, "window_ms", "--batch-window-ms", min=0),
    max_batch: int = option(Settings, "max_batch", min=1),
    max_request_mb: float = typer.Option(
        Settings.model_fields["max_request_bytes"].default / 2**20,
        "--max-request-mb",
        min=0.01,
        help="Largest request body (and image) accepted, in MiB (the setting max_request_bytes).",
    ),
    cache_size: int = option(Settings, "cache_size", min=1),
    max_prompt_chars: int = option(Settings, "max_prompt_chars", min=1000),
    render_seconds: float = option(Settings, "render_seconds"),
    body_idle_s: float = option(Settings, "body_idle_s"),
    body_total_s: float = option(Settings, "body_total_s"),
    shutdown_s: float = option(Settings, "shutdown_s", min=0),
    overrides: list[str] = typer.Option([], "--set", help="Pipeline override a.b=c (repeatable)."),
    trust_remote_code: bool = typer.Option(
        False,
        "--trust-remote-code",
        help="Let the reader run code from its model's repository (a pipeline file cannot).",
    ),
) -> None:
    """Serve a pipeline over HTTP: JSON API, web page and prompt playground."""
    with user_errors():
        from ragvqa.serve.server import serve

        settings = from_options(
            Settings,
            {
                "window_ms": window_ms,
                "max_batch": max_batch,
                "max_request_bytes": int(max_request_mb * 2**20),
                "cache_size": cache_size,
                "can_save": prompts is not None,  # the --prompts folder is the user's
                "max_prompt_chars": max_prompt_chars,
                "render_seconds": render_seconds,
                "body_idle_s": body_idle_s,
                "body_total_s": body_total_s,
                "shutdown_s": shutdown_s,
            },
        )
        serve(
            pipeline,
            overrides,
            host=host,
            port=port,
            settings=settings,
            prompts=prompts,
            trust_remote_code=trust_remote_code,
        )
