"""Small utilities that exist once: the first line of an exception and the "did you mean" hint
(`ragvqa.errors`), reading a JSON file (`ragvqa.io.read_json`), a note on stderr
(`ragvqa.logs.note`) and writing a file atomically (`ragvqa.io`). Each scan fails when a copy
of an idiom appears elsewhere in ragvqa/; what is left is listed with its reason (`LEGITIMATE`)
or as not switched yet, in files of other owners (`PENDING`, issue 24: these lists only
shrink)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ragvqa.errors import UserError, did_you_mean, first_line
from ragvqa.io import read_json, write_new
from ragvqa.logs import note, plain

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
        # `(str(exc).strip().splitlines() or [...])[0]`, `str(exc).splitlines()[0]` (a message's
        # first line, not a file's: `path.read_text().splitlines()[0]`)
        "first line": re.compile(r"str\(\w+\)(\.strip\(\))?\.splitlines\(\)(\s*or\s*\[|\[0\])"),
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


def test_read_json_reads_a_document_and_says_what_is_wrong_in_one_line(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"a": [1, "é"]}', encoding="utf-8")
    assert read_json(good, expect=dict) == {"a": [1, "é"]}
    missing = tmp_path / "nothing.json"
    with pytest.raises(UserError, match=r"nothing\.json: image mapping not found$"):
        read_json(missing, what="image mapping")
    assert read_json(missing, missing={}) == {}
    with pytest.raises(UserError, match="lock is a folder, expected a file"):
        read_json(tmp_path, what="lock")
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "a": 1,,\n}\n')
    with pytest.raises(UserError) as info:
        read_json(broken, what="config.json")
    assert str(info.value) == (
        f"{broken}:2: config.json is not valid JSON "
        "(Expecting property name enclosed in double quotes, column 10)"
    )
    assert (info.value.path, info.value.line) == (str(broken), 2)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'"caf\xe9"')
    with pytest.raises(UserError, match="file is not UTF-8 text"):
        read_json(latin)


def test_read_json_checks_the_top_level_type_and_size(tmp_path):
    array = tmp_path / "a.json"
    array.write_text("[1, 2]")
    with pytest.raises(UserError, match=r"a\.json: file must be a JSON object, not an array$"):
        read_json(array, expect=dict)
    with pytest.raises(UserError, match=r"mapping must be a JSON object \{url: path\}, not an"):
        read_json(array, what="mapping", expect=dict, shape="a JSON object {url: path}")
    assert read_json(array, expect=(dict, list)) == [1, 2]
    invalid = "not a lock file; use another"
    with pytest.raises(
        UserError, match=r"a\.json: not a lock file; use another \(found an array\)"
    ):
        read_json(array, expect=dict, invalid=invalid)
    null = tmp_path / "null.json"
    null.write_text("null")
    with pytest.raises(UserError, match="must be a JSON object or a JSON array, not null"):
        read_json(null, expect=(dict, list))
    with pytest.raises(UserError, match=r"not a lock file; use another \(over 3 bytes\)"):
        read_json(array, invalid=invalid, max_bytes=3)
    broken = tmp_path / "b.json"
    broken.write_text("{")
    with pytest.raises(UserError, match=r"b\.json:1: not a lock file; use another \(Expecting"):
        read_json(broken, invalid=invalid)


def test_write_new_never_replaces_a_file(tmp_path):
    target = tmp_path / "sub" / "v1.j2"
    write_new(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(UserError, match=r"v1\.j2: exists: a version never changes"):
        write_new(target, "second", exists="exists: a version never changes")
    assert target.read_text() == "first" and [p.name for p in target.parent.iterdir()] == ["v1.j2"]


def test_a_note_is_one_flushed_line_on_stderr(capsys):
    note("kb.json predates fingerprints")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "ragvqa: kb.json predates fingerprints\n")
    assert plain("a\x1b[31mb\nc\u202e") == "a\\x1b[31mb\\nc\\u202e"


def _sites(pattern: re.Pattern[str]) -> dict[str, int]:
    """Occurrences of `pattern` per file of ragvqa/ (path relative to it)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        count = len(pattern.findall(path.read_text(encoding="utf-8")))
        if count:
            found[str(path.relative_to(PACKAGE))] = count
    return found


def _check_scan(pattern: re.Pattern[str], allowed: dict[str, tuple[int, str]]) -> None:
    """No file holds more sites of `pattern` than `allowed` lists for it (none when unlisted)."""
    found = _sites(pattern)
    extra = {f: n for f, n in found.items() if n > allowed.get(f, (0, ""))[0]}
    assert not extra, f"{pattern.pattern} outside its one home (files: sites): {extra}"


# the JSON module's readers, called or passed (`map(json.loads, ...)`); not in `quotes`
JSON_READ = re.compile(r"(?<!`)\bjson\.loads?\b(?!`)")
# sites that parse text which is not a file's whole content, or round-trip a value
LEGITIMATE_JSON = {
    "io.py": (1, "read_json itself"),
    "jsonl.py": (1, "one line of a JSONL file: the JSONL reader itself"),
    "kb/readers.py": (1, "one line of a JSONL KB file, numbered by its reader"),
    "run/journal.py": (1, "one line of a generation journal"),
    "run/lock.py": (1, "the lock's content, read from the descriptor that holds the lock"),
    "serve/client.py": (2, "HTTP response bodies"),
    "readers/openai_backend.py": (1, "an HTTP response body"),
    "serve/service.py": (1, "a round trip through JSON: the config as JSON values"),
    "prompt_versions.py": (1, "a round trip through JSON: a render as JSON values"),
    "cli/prompts.py": (1, "a round trip through JSON: the lock as JSON values"),
}
PENDING_JSON: dict[str, tuple[int, str]] = {}  # every file's JSON is read by read_json


def test_json_files_are_read_by_read_json():
    _check_scan(JSON_READ, LEGITIMATE_JSON | PENDING_JSON)
    assert _sites(JSON_READ)["io.py"] == 1  # the scan sees a site


# `print(f"ragvqa: ...", file=sys.stderr)` and helpers like it: ragvqa.logs.note
NOTE = re.compile(r"print\(\s*f?\"ragvqa: ")
PENDING_NOTES: dict[str, tuple[int, str]] = {}  # every note goes through logs.note


def test_notes_on_stderr_go_through_note():
    _check_scan(NOTE, {"logs.py": (1, "note itself")} | PENDING_NOTES)
    assert _sites(NOTE)["logs.py"] == 1


# a temporary file renamed into place, or a JSON document written in place, by hand
ATOMIC = re.compile(r"os\.replace\(|os\.link\(|\.rename\(|json\.dump\(|write_text\(json\.dumps")
LEGITIMATE_ATOMIC = {
    "io.py": (3, "the atomic writers themselves (atomic_path, write_new, write_json)"),
    "train/state.py": (2, "a checkpoint is a folder: renamed whole, the old one aside first"),
    "fetch/fetch.py": (1, "a download's `.part` file: kept on failure, the next fetch resumes it"),
    "fetch/fetch_hub.py": (2, "the data root's `.part` landing (data list shows it as partial)"),
    "fetch/fetch_pypi.py": (3, "the data root's `.part` landing; a staging folder moved whole"),
    "fetch/landing.py": (1, "a bad download moved aside, not a write"),
    "serve/uploads.py": (1, "an upload renamed to its image type's extension, not a write"),
}
# JSON written in place in files of other owners: none left (issue 24)
PENDING_ATOMIC: dict[str, tuple[int, str]] = {}


def test_files_are_written_atomically_through_io():
    _check_scan(ATOMIC, LEGITIMATE_ATOMIC | PENDING_ATOMIC)
    assert _sites(ATOMIC)["io.py"] == 3


def test_the_switched_readers_keep_their_messages(tmp_path):
    """A few of the sites now reading through `read_json`, with the words they had before."""
    from ragvqa.data.images import load_id2name
    from ragvqa.fetch.gguf import BUILD_FILE, read_record
    from ragvqa.kb.images import ImageResolver
    from ragvqa.kb.store import read_manifest
    from ragvqa.models.checkpoint import read_config
    from ragvqa.prompts import LOCK, PromptLibrary

    array = tmp_path / "kb.json"
    array.write_text("[]")
    with pytest.raises(UserError, match="image mapping must be a JSON object {url: path}"):
        ImageResolver(mapping=array)
    with pytest.raises(UserError, match=r"nothing\.json: image mapping not found"):
        ImageResolver(mapping=tmp_path / "nothing.json")
    with pytest.raises(UserError, match="kb.json is not a ragvqa KB manifest"):
        read_manifest(array)
    with pytest.raises(UserError, match=r"nothing: not a checkpoint folder \(no config\.json\)"):
        read_config(tmp_path / "nothing")
    with pytest.raises(UserError, match="not found"):
        load_id2name(tmp_path / "nothing.json")
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(UserError, match=r"config\.json:1: config\.json is not valid JSON"):
        read_config(tmp_path)
    (tmp_path / LOCK).write_text('{"a@1": 3}')
    with pytest.raises(UserError, match="not a lock file: a JSON object {id@version: sha256}"):
        PromptLibrary(tmp_path).lock()
    (tmp_path / BUILD_FILE).write_text("not JSON")
    assert read_record(tmp_path) is None  # data verify: "missing", never a traceback
