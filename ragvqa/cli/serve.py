"""`ragvqa serve --pipeline P.yaml`: load a pipeline once and serve it over HTTP, with a web page
and a prompt playground (see docs/serving.md). The server's code (FastAPI, uvicorn) loads only
when the command runs, so `ragvqa --help` stays fast."""

from __future__ import annotations

from pathlib import Path

import typer

from ragvqa.cli.common import user_errors


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
    window_ms: float = typer.Option(
        10.0, "--batch-window-ms", min=0, help="How long requests are collected into a batch."
    ),
    max_batch: int = typer.Option(32, "--max-batch", min=1, help="Most requests in one batch."),
    max_request_mb: float = typer.Option(
        20.0, "--max-request-mb", min=0.01, help="Largest request body (and image) accepted."
    ),
    cache_size: int = typer.Option(
        256, "--cache-size", min=1, help="Recent questions kept for the playground's re-answers."
    ),
    max_prompt_chars: int = typer.Option(
        100_000,
        "--max-prompt-chars",
        min=1000,
        help="Longest prompt a template may render, in characters (a playground draft over it "
        "is refused with 413 before any token is counted).",
    ),
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
        from ragvqa.serve.service import Settings

        settings = Settings(
            window_ms=window_ms,
            max_batch=max_batch,
            max_request_bytes=int(max_request_mb * 2**20),
            cache_size=cache_size,
            can_save=prompts is not None,
            max_prompt_chars=max_prompt_chars,
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
