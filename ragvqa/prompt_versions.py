"""Making prompt template versions, and the golden renders that pin them.

`new_version` is the one way a version is made (`ragvqa prompts new`, the web playground's "save
as new version"): the next `v<N>.j2` of an id, made from an existing version, with its front
matter set (id, version, parent, a changelog line), checked (parsed and sample-rendered) before
anything is written, never written over an existing file, and locked in `LOCK.json` at once.

A golden render is `sample_render` of a version as JSON (`tests/golden/prompts/<id>@<v>.json`,
"/" written "__"): the test suite checks every version against its file, so a change in how
templates render is seen. `update_golden` writes the missing and changed ones
(`ragvqa prompts validate --update-golden`).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import read_json, write_json, write_new
from ragvqa.prompts import (
    _FRONT,
    LOCK,
    PromptLibrary,
    PromptTemplate,
    sample_render,
    template_text,
)

# front matter fields in the order they are written
KEY_ORDER = ("id", "version", "description", "inputs", "answer_pattern", "parent", "changelog")
GOLDEN_COMMAND = "ragvqa prompts validate --update-golden"
_ID = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")


def new_version(
    library_root: str | Path | None,
    template_id: str,
    text: str | None = None,
    *,
    from_ref: str | None = None,
    changelog: str | None = None,
    dry_run: bool = False,
) -> PromptTemplate:
    """Write the next version of `template_id` under `library_root` (None: the shipped
    prompts/ folder), lock it, and return it.

    Args:
        template_id: "answer/evidence_short"; a new id starts at version 1.
        text: The new template: a whole file (front matter and Jinja2 blocks; its description,
            inputs and answer_pattern are kept) or the Jinja2 blocks alone (the front matter is
            `from_ref`'s). None: `from_ref`'s file as it is.
        from_ref: The version it is made from ("answer/evidence_short@1"); default: the latest
            version of `template_id` (needed for a new id). It becomes the `parent`.
        changelog: What changed, appended to the changelog as "v<N>: ..." (default: "made from
            <from_ref>").
        dry_run: Check and return the version as it would be written (its `path` is where it
            would go), writing nothing.

    Raises:
        UserError: an unknown `from_ref`, a malformed id, a template that does not parse or
            render (the message names the problem), or a version file that exists already.
    """
    if not _ID.fullmatch(template_id):
        raise UserError(f"template id {template_id!r} is not group/name (letters, digits, _ -)")
    library = PromptLibrary(library_root)
    base = library.get(from_ref or template_id)
    versions = library.versions(template_id)  # a broken file's number is taken too
    version = 1 + max(versions, default=0)
    content = _content(base, template_id, version, text, changelog, fresh=not versions)
    ref = f"{template_id}@{version}"
    target = library.root.joinpath(*template_id.split("/"), f"v{version}.j2")
    template = replace(_checked(content, ref), path=target)
    if dry_run:
        return template
    _write_new(target, content)
    lock = library.lock()
    lock[ref] = template.sha256
    write_json(library.root / LOCK, dict(sorted(lock.items())))
    return template


def _content(
    base: PromptTemplate,
    template_id: str,
    version: int,
    text: str | None,
    changelog: str | None,
    *,
    fresh: bool,
) -> str:
    """The new file: front matter (server-owned fields set) and Jinja2 blocks."""
    import yaml

    base_text = template_text(base.path.read_bytes(), base.path)  # CRLF read as "\n"
    text = base_text if text is None else text.removeprefix("\ufeff").replace("\r\n", "\n")
    match = _FRONT.match(text)
    front, body = (match.group(1), text[match.end() :]) if match else (None, text)
    if front is None:
        front = _FRONT.match(base_text).group(1)  # type: ignore[union-attr]  # base parsed
    try:
        meta = yaml.safe_load(front) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"front matter is not YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(meta, dict):
        raise UserError("front matter is not a YAML mapping")
    line = " ".join((changelog or f"made from {base.ref}").split())
    history = [] if fresh and template_id != base.id else list(meta.get("changelog") or [])
    meta.update(
        id=template_id,
        version=version,
        parent=base.ref,
        changelog=[*history, f"v{version}: {line}"],
    )
    ordered = {k: meta[k] for k in KEY_ORDER if k in meta}
    ordered.update((k, v) for k, v in meta.items() if k not in ordered)
    dumped = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{dumped}---\n{body}"


def _checked(content: str, ref: str) -> PromptTemplate:
    """The template of `content`, parsed and sample-rendered by the code that reads shipped
    ones (in a temporary folder), so its sha256 is the written file's."""
    template_id, version = ref.rsplit("@", 1)
    with tempfile.TemporaryDirectory(prefix="ragvqa-prompt-") as tmp:
        path = Path(tmp).joinpath(*template_id.split("/"), f"v{version}.j2")
        path.parent.mkdir(parents=True)
        path.write_text(content, encoding="utf-8")
        try:
            template = PromptLibrary(tmp).get(ref)
            sample_render(template)
        except UserError as exc:
            raise UserError(f"new version {ref}: {exc.problem}") from None
    return template


def _write_new(target: Path, content: str) -> None:
    """Write a new version's file: whole or not at all, and never over an existing version."""
    write_new(target, content, exists="exists: a version never changes")


# --- golden renders -------------------------------------------------------------------------


def default_golden_folder(library_root: str | Path | None = None) -> Path:
    """Where a prompts/ folder's golden renders live: `tests/golden/prompts` beside it (the
    checkout's, for the shipped templates)."""
    root = Path(library_root) if library_root else PromptLibrary().root
    return root.parent / "tests" / "golden" / "prompts"


def golden_file(folder: str | Path, ref: str) -> Path:
    """The golden render file of `ref` ("answer/no_retrieval@1" -> answer__no_retrieval@1.json)."""
    return Path(folder) / (ref.replace("/", "__") + ".json")


def golden_render(template: PromptTemplate) -> dict[str, Any]:
    """`sample_render` of `template` as the JSON a golden file holds."""
    return json.loads(json.dumps(asdict(sample_render(template))))


def golden_problem(library: PromptLibrary, folder: str | Path, ref: str) -> str | None:
    """Why `ref` does not match its golden render in `folder` (None when it does); the message
    names the command that writes it."""
    path = golden_file(folder, ref)
    if not path.is_file():
        return f"{ref}: no golden render {path.name}; `{GOLDEN_COMMAND}` writes it"
    if golden_render(library.get(ref)) != read_json(path, what="golden render"):
        return (
            f"{ref}: renders differently from {path.name}; if the change is intended, run "
            f"`{GOLDEN_COMMAND}` and review the diff"
        )
    return None


def update_golden(
    library: PromptLibrary, folder: str | Path, refs: list[str] | None = None
) -> dict[str, str]:
    """Write the golden render of each of `refs` (default: every version) that is missing
    ("added") or differs ("updated"); returns those written, ref -> what was done."""
    done = {}
    for ref in library.refs() if refs is None else refs:
        path = golden_file(folder, ref)
        render = golden_render(library.get(ref))
        old = read_json(path, what="golden render", missing=None)
        if old != render:
            write_json(path, render)
            done[ref] = "added" if old is None else "updated"
    return done
