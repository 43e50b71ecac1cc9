"""The one error type of the server's request handling: a `UserError` with an HTTP status.

The app turns it into `{"error": "<one line>"}` with its status; a plain `UserError` from the
pipeline (an unknown template, an empty question) is a 400.
"""

from __future__ import annotations

from ragvqa.errors import UserError
from ragvqa.logs import note


class RequestError(UserError):
    """A bad request: one line for the client, and the HTTP status to send it with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(one_line(message))
        self.status = status


def one_line(text: str, limit: int = 500) -> str:
    """`text` as one printable line of at most `limit` characters (client-given names too)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def log(message: str) -> None:
    """One line on the server's stderr (what a client did that the operator may want to know:
    an upload cut short, a KB image that cannot be read)."""
    note(one_line(message, 1000))
