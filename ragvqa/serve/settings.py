"""The server's settings, defined once: each field's type, default and help are the options of
`ragvqa serve` (`ragvqa.schema.options`), and the running server reads them from here.

Every prompt the server renders (a client's draft, saved versions, the pipeline's own) is at
most `max_prompt_chars` characters and `render_seconds` long to render
(`ragvqa.prompts.render_bounds`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """The server's knobs (the `ragvqa serve` options)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_ms: float = Field(
        10.0, ge=0, description="How long requests are collected into a batch, in ms."
    )
    max_batch: int = Field(32, ge=1, description="Most requests in one batch.")
    max_request_bytes: int = Field(
        20 * 2**20, ge=1, description="Largest request body (and image) accepted, in bytes."
    )
    cache_size: int = Field(
        256, ge=1, description="Recent questions kept for the playground's re-answers."
    )
    can_save: bool = Field(
        False, description="Whether the playground may write new template versions."
    )
    max_prompt_chars: int = Field(
        100_000,
        ge=1000,
        description="Longest prompt a template may render, in characters (a playground draft "
        "over it is refused with 413 before any token is counted).",
    )
    render_seconds: float = Field(
        2.0, gt=0, description="Longest a template may take to render, in seconds."
    )
    body_idle_s: float = Field(
        30.0, gt=0, description="Longest wait between two chunks of a request body, in seconds."
    )
    body_total_s: float = Field(300.0, gt=0, description="Longest a request body may take.")
    shutdown_s: float = Field(
        5.0,
        ge=0,
        description="On SIGTERM or Ctrl-C: how long requests in flight get to finish before "
        "they are cancelled, in seconds.",
    )
