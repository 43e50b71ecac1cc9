"""The JSONL reader: orjson's speed with exactly the objects and errors of `json.loads`.

Each case is a line whose decoding by orjson alone would differ from the standard library's
(or where the line ending changes the standard library's error), with the value worked out by
hand; every case runs with orjson and, as if it were not installed, without it.
"""

from __future__ import annotations

import math

import pytest

import ragvqa.jsonl as jsonl
from ragvqa.errors import UserError
from ragvqa.io import iter_jsonl


@pytest.fixture(params=["orjson", "stdlib"])
def decoder(request, monkeypatch):
    """Run the test with orjson, then with the standard library alone."""
    if request.param == "stdlib":
        monkeypatch.setattr(jsonl, "orjson", None)
    return request.param


def _read(tmp_path, data: bytes) -> list[tuple[int, dict]]:
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)
    return list(iter_jsonl(path))


def test_values_are_those_of_the_standard_library(tmp_path, decoder):
    data = (
        b'{"big": 123456789012345678901234567890, "neg": -9999999999999999999}\n'  # 1
        b'{"u64": 18446744073709551615, "x": 0.1, "e": 1e-400}\n'  # 2
        b'{"nan": NaN, "inf": Infinity, "huge": 1e400}\n'  # 3
        b'{"lone": "\\ud800", "pair": "\\ud83d\\ude00", "k": 1, "k": 2}\n'  # 4
        b"\n   \n\xc2\xa0\r\n"  # 5-7: blank (a no-break space is blank too)
        b'{"crlf": true}\r\n'  # 8
        b'{"id": "0000000000000000000000"}'  # 9: no final line feed
    )
    rows = _read(tmp_path, data)
    assert [line for line, _ in rows] == [1, 2, 3, 4, 8, 9]
    first, second, third, fourth, crlf, last = (obj for _, obj in rows)
    assert first == {"big": 123456789012345678901234567890, "neg": -9999999999999999999}
    assert type(first["big"]) is int and type(first["neg"]) is int  # orjson alone: floats
    assert second == {"u64": 18446744073709551615, "x": 0.1, "e": 0.0}
    assert math.isnan(third["nan"]) and third["inf"] == math.inf and third["huge"] == math.inf
    assert fourth == {"lone": "\ud800", "pair": "\U0001f600", "k": 2}
    assert crlf == {"crlf": True} and last == {"id": "0000000000000000000000"}


def test_a_byte_order_mark_is_tolerated_on_the_first_line_only(tmp_path, decoder):
    assert _read(tmp_path, b'\xef\xbb\xbf{"a": 1}\n') == [(1, {"a": 1})]
    with pytest.raises(UserError) as err:
        _read(tmp_path, b'{"a": 1}\n\xef\xbb\xbf{"b": 2}\n')
    assert str(err.value).endswith(
        "f.jsonl:2: malformed JSON (Unexpected UTF-8 BOM (decode using utf-8-sig))"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1}\n\n{"b": \n', "3: malformed JSON (Expecting value)"),
        # the line feed is part of the line: inside a string it is a control character...
        (b'{"a": 1}\n{"b": "x\n', "2: malformed JSON (Invalid control character at)"),
        # ...and without one the string is unterminated
        (b'{"a": 1}\n{"b": "x', "2: malformed JSON (Unterminated string starting at)"),
        (b'{"a": 1}\n[1, 2]\n', "2: expected a JSON object, got list"),
        (b'"text"\n', "1: expected a JSON object, got str"),
        (b'{"a": 1}\n{"b": "caf\xe9"}\n', "2: not UTF-8 text"),
        (b'{"a": 1} {"b": 2}\n', "1: malformed JSON (Extra data)"),
    ],
)
def test_errors_name_the_line_in_the_standard_librarys_words(tmp_path, decoder, data, message):
    with pytest.raises(UserError) as err:
        _read(tmp_path, data)
    assert str(err.value) == f"{tmp_path / 'f.jsonl'}:{message}"


def test_lines_are_numbered_across_blocks(tmp_path, decoder, monkeypatch):
    monkeypatch.setattr(jsonl, "_BLOCK", 16)  # most lines cross a block boundary
    long = "y" * 100  # a line several blocks long
    data = f'{{"n": 1}}\n\n{{"s": "{long}"}}\n{{"n": 12345678901234567890}}\n{{"n": 4}}'
    assert _read(tmp_path, data.encode()) == [
        (1, {"n": 1}),
        (3, {"s": long}),
        (4, {"n": 12345678901234567890}),
        (5, {"n": 4}),
    ]
    with pytest.raises(UserError, match=r"f\.jsonl:4: malformed JSON"):
        _read(tmp_path, b'{"n": 1}\n\n{"s": "' + b"z" * 40 + b'"}\n{"n": \n')


def test_empty_and_missing_files(tmp_path, decoder):
    assert _read(tmp_path, b"") == []
    assert _read(tmp_path, b"\n\n") == []
    with pytest.raises(UserError, match="file not found"):
        list(iter_jsonl(tmp_path / "missing.jsonl"))
