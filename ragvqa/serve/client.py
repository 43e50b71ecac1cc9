"""`ragvqa answer --server URL`: one question sent to a running `ragvqa serve`.

Standard library only (urllib and a hand-built multipart body), so the client needs none of
the server's packages. The server's one-line errors come back as `UserError`s.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError

TIMEOUT_S = 600.0  # a first question can wait for a busy engine


def multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, str]:
    """A multipart/form-data body of text fields and files, and its Content-Type."""
    boundary = f"ragvqa-{secrets.token_hex(16)}"
    chunks: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        chunks += [head.encode(), value.encode("utf-8"), b"\r\n"]
    for name, path in files.items():
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        filename = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'
        )
        chunks += [head.encode("utf-8"), path.read_bytes(), b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def answer_remote(
    server: str,
    question: str,
    image: str | None,
    *,
    template: str | None = None,
    top_k: int | None = None,
    timeout: float = TIMEOUT_S,
) -> dict[str, Any]:
    """The answer record of `POST {server}/v1/answer` (what `ragvqa answer --json` prints)."""
    if not server.startswith(("http://", "https://")):
        raise UserError(f"--server must be an http:// or https:// URL, not {server!r}")
    fields = {"question": question}
    if template:
        fields["template"] = template
    if top_k:
        fields["top_k"] = str(top_k)
    files = {"image": Path(image)} if image else {}
    body, kind = multipart(fields, files)
    request = urllib.request.Request(
        server.rstrip("/") + "/v1/answer",
        data=body,
        headers={"Content-Type": kind, "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise UserError(f"the server says: {_error_of(exc)}") from None
    except urllib.error.URLError as exc:
        raise UserError(f"cannot reach the server at {server} ({exc.reason})") from None
    except (TimeoutError, json.JSONDecodeError) as exc:
        raise UserError(f"no answer from the server at {server} ({exc})") from None


def _error_of(exc: urllib.error.HTTPError) -> str:
    """The server's one-line error, else the HTTP status."""
    try:
        error = json.loads(exc.read()).get("error")
    except (ValueError, AttributeError, OSError):
        error = None
    return str(error) if error else f"HTTP {exc.code} {exc.reason}"
