"""Reading a request of `ragvqa serve`: the body's size and time limits (`BodyLimit`, an ASGI
middleware) and its form, whose text fields must be UTF-8 (`read_form`, `form_text`,
`form_integer`).

A body larger than the cap is a 413; one that stalls is a 408 and its connection is closed; a
client that goes away during its upload is one line on stderr; a text field that is not UTF-8
(multipart or URL-encoded, raw or %-escaped) is a 400, as `ragvqa answer` refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from ragvqa.serve.errors import RequestError, log


class TooLarge(HTTPException):
    """The request body passed the size cap (raised while it is read)."""


class BodyTimeout(Exception):
    """The request body stalled (raised while it is read; the middleware answers 408)."""


class BodyLimit:
    """ASGI middleware over every request's body: larger than `max_bytes` is a 413, whether it
    says its length up front or streams it; a body with no data for `idle_s` seconds, or not
    whole after `total_s`, is a 408 and the connection is closed (a client that stalls its
    upload would hold its request, and a server's shutdown, for ever); a client that
    disconnects during its upload is one line on stderr, not a traceback; a request cancelled
    because the server is stopping gets a 503."""

    def __init__(self, app: Any, max_bytes: int, idle_s: float = 30.0, total_s: float = 300.0):
        self.app, self.max_bytes = app, max_bytes
        self.idle_s, self.total_s = idle_s, total_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request larger than {self.max_bytes / 2**20:g} MB"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            status = 413 if length.isdigit() else 400
            error = message if status == 413 else "bad Content-Length"
            return await JSONResponse({"error": error}, status)(scope, receive, send)
        seen, whole, started = 0, False, False
        deadline = time.monotonic() + self.total_s

        async def limited() -> Any:
            nonlocal seen, whole
            if whole:  # after the body: waiting for a disconnect is not an upload
                return await receive()
            left = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(min(self.idle_s, left), 0.0)):
                    event = await receive()
            except TimeoutError:
                raise BodyTimeout(
                    f"request body not received in time ({seen:,} bytes came; a body may pause "
                    f"{self.idle_s:g} s at most and take {self.total_s:g} s in all)"
                ) from None
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.max_bytes:
                    raise TooLarge(413, message)
                whole = not event.get("more_body", False)
            return event

        async def sending(event: Any) -> None:
            nonlocal started
            started = started or event["type"] == "http.response.start"
            await send(event)

        where = f"{scope.get('method', '')} {scope.get('path', '')}"
        try:
            await self.app(scope, limited, sending)
        except BodyTimeout as exc:
            log(f"{where}: {exc}")
            if not started:
                closing = JSONResponse({"error": str(exc)}, 408, headers={"Connection": "close"})
                await closing(scope, receive, send)
        except ClientDisconnect:
            log(f"{where}: the client disconnected during its upload ({seen:,} bytes came)")
        except asyncio.CancelledError:
            # the server is stopping (SIGTERM, Ctrl-C) and this request outlived the grace
            # period: its client hears so, and its task ends here (no traceback in the log)
            if not started:
                stopping = JSONResponse(
                    {"error": "the server is stopping"}, 503, headers={"Connection": "close"}
                )
                with contextlib.suppress(Exception):
                    await stopping(scope, receive, send)


async def read_form(request: Request, max_bytes: int) -> FormData:
    """The request's form, its text fields decoded as UTF-8 (starlette would read other bytes
    as Latin-1 and answer a question nobody asked): other bytes are a 400."""
    kind = request.headers.get("content-type", "")
    parser: _Utf8Multipart | _Utf8Urlencoded
    if kind.startswith("multipart/form-data"):
        parser = _Utf8Multipart(
            request.headers, request.stream(), max_files=1, max_fields=8, max_part_size=max_bytes
        )
    elif kind.startswith("application/x-www-form-urlencoded"):
        parser = _Utf8Urlencoded(
            request.headers, request.stream(), max_fields=8, max_part_size=max_bytes
        )
    else:
        raise RequestError(
            "send multipart/form-data (image or image_url, question, template, top_k)", 415
        )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise RequestError(exc.message) from None
    if parser.not_utf8:
        await form.close()
        name = parser.not_utf8[0]
        field = "the question" if name == "question" else name  # as `ragvqa answer` says it
        raise RequestError(f"{field} is not valid UTF-8 text")
    return form


class _Utf8Multipart(MultiPartParser):
    """starlette's multipart parser with text fields decoded as UTF-8 or refused."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.not_utf8: list[str] = []

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                text = bytes(part.data).decode("utf-8")
            except UnicodeDecodeError:
                self.not_utf8.append(part.field_name)
                text = ""
            self.items.append((part.field_name, text))
        else:
            super().on_part_end()


class _Utf8Urlencoded(FormParser):
    """starlette's form parser with values (raw or %-escaped) decoded as UTF-8 or refused."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.not_utf8: list[str] = []

    def on_field_end(self) -> None:
        raw = bytes(self._field_value)
        super().on_field_end()  # counts the field (and refuses too many)
        name = unquote_plus(self._field_name.decode("latin-1"))
        try:
            text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            self.not_utf8.append(name)
            text = ""
        self._items[-1] = (name, text)


def form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise RequestError(f"{name} must be a text field, not a file")
    return value


def form_integer(value: str | None, name: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise RequestError(f"{name} must be an integer, not {value!r}") from None
