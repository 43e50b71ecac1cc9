"""Small utilities that exist once (`ragvqa.errors`): the first line of an exception and the
"did you mean" hint. The scan fails when a copy of either idiom appears elsewhere in ragvqa/."""

from __future__ import annotations

import re
from pathlib import Path

from ragvqa.errors import did_you_mean, first_line

PACKAGE = Path(__file__).resolve().parents[1] / "ragvqa"


def test_first_line_of_an_exception():
    assert first_line(ValueError("  bad value\n  at line 3\n")) == "bad value"
    assert first_line(KeyError()) == "KeyError"  # no message: the type's name
    assert first_line(OSError(""), "unreadable") == "unreadable"


def test_did_you_mean():
    assert did_you_mean("retrival", ["retrieval", "reader"]) == "; did you mean 'retrieval'?"
    assert did_you_mean("zzz", ["retrieval"]) == ""
    assert did_you_mean("zzz", ["retrieval"], otherwise=" (see list)") == " (see list)"
    assert did_you_mean(3, [1, 3]) == "; did you mean '3'?"  # any values, compared as text


def test_each_idiom_is_defined_once():
    idioms = {
        "get_close_matches": re.compile(r"get_close_matches\("),
        # `(str(exc).strip().splitlines() or [...])[0]`, `str(exc).splitlines()[0]`
        "first line": re.compile(r"splitlines\(\)(\s*or\s*\[|\[0\])"),
    }
    found = {
        name: sorted(
            str(path.relative_to(PACKAGE))
            for path in PACKAGE.rglob("*.py")
            if pattern.search(path.read_text(encoding="utf-8"))
        )
        for name, pattern in idioms.items()
    }
    assert found == {"get_close_matches": ["errors.py"], "first line": []}
