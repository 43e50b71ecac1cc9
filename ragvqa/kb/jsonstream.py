"""Streaming the items of one huge top-level JSON object ({key: value, ...}).

The E-VQA knowledge base is a single multi-GB JSON object; `json.load` would need tens of GB
of RAM. `iter_object_items` reads it in chunks and decodes one (key, value) pair at a time with
the standard library's decoder, so memory stays at the size of the largest single value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

CHUNK = 1 << 20
_WS = " \t\n\r"


class JSONStreamError(ValueError):
    """The stream is not a JSON object, or ends in the middle of one."""


class _Buffer:
    def __init__(self, fh: IO[str]):
        self.fh, self.text, self.pos, self.eof = fh, "", 0, False

    def fill(self) -> bool:
        """Append one chunk; False at end of file."""
        if self.eof:
            return False
        chunk = self.fh.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.text = self.text[self.pos :] + chunk
        self.pos = 0
        return True

    def skip_ws(self) -> str:
        """The next non-space character (not consumed), or '' at end of file."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""

    def expect(self, chars: str) -> str:
        char = self.skip_ws()
        if not char or char not in chars:
            found = repr(char) if char else "end of file"
            raise JSONStreamError(f"expected one of {chars!r}, found {found}")
        self.pos += 1
        return char

    def value(self, decoder: json.JSONDecoder) -> Any:
        self.skip_ws()
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self.fill():
                    continue
                raise JSONStreamError(f"incomplete or invalid JSON value ({exc.msg})") from None
            # a number could continue in the next chunk: only trust it when followed by more text
            if end == len(self.text) and not self.eof and self.fill():
                continue
            self.pos = end
            return value


def iter_object_items(fh: IO[str]) -> Iterator[tuple[str, Any]]:
    """Yield (key, value) of a top-level JSON object, one pair in memory at a time."""
    buf, decoder = _Buffer(fh), json.JSONDecoder()
    buf.expect("{")
    if buf.skip_ws() == "}":
        return
    while True:
        key = buf.value(decoder)
        if not isinstance(key, str):
            raise JSONStreamError("object keys must be strings")
        buf.expect(":")
        yield key, buf.value(decoder)
        if buf.expect(",}") == "}":
            return
