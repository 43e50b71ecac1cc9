"""Versioned prompt templates, rendered by a pure function into model-neutral `ChatPrompt`s.

A template is one file, `prompts/<group>/<name>/v<N>.j2`: a YAML front matter between `---`
lines (id, version, description, inputs, answer_pattern, parent, changelog) and Jinja2 blocks
named after chat roles (`system`, `user`, optionally `assistant`). Rendering uses
StrictUndefined, so a misspelt variable is an error, not an empty string. The image is placed
with `{{ image }}` and becomes an image part of the message, never a model token. Retrieved text
is data: special tokens and role markers inside passages are neutralised before rendering.
Rendering lives in `ragvqa.prompt_render` (re-exported here), its bounds in
`ragvqa.prompt_sandbox`. Templates render in Jinja2's immutable sandbox: a template from a
folder of one's own (`--root`) can read its inputs but not reach Python (no `__globals__`,
`os.popen`, no changing inputs).
A render is bounded inside Jinja2 itself (`ragvqa.prompt_sandbox`): no string, list or number
it makes and no prompt it renders may pass `max_chars` characters (`'x' * 100000000` is refused
before anything is allocated), and it stops after `max_seconds`; a template that passes a bound
is a `RenderLimit`, a one-line `UserError`.

A version never changes once results cite it: `prompts/LOCK.json` records the sha256 of every
version, and `ragvqa prompts validate` fails when a locked file was edited (make a new version).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError, did_you_mean
from ragvqa.io import read_json, write_json
from ragvqa.prompt_render import neutralise, render, sample_render  # noqa: F401 (re-exported)
from ragvqa.prompt_sandbox import (
    render_bounds,  # noqa: F401 (the server's import)
)
from ragvqa.resources import resource_dir
from ragvqa.types import ChatPrompt, RetrievedPassage

INPUTS = ("question", "passages", "image", "candidates")
LOCK = "LOCK.json"
# front matter between "---" lines (CRLF files are read with "\n" line ends: `template_text`)
_FRONT = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)


def default_root() -> Path:
    """The prompt templates ragvqa ships (the repository's top-level prompts/ folder)."""
    return resource_dir("prompts")


@dataclass(frozen=True)
class PromptTemplate:
    """One template version, parsed."""

    id: str
    version: int
    description: str
    inputs: tuple[str, ...]
    answer_pattern: str | None
    parent: str | None
    changelog: tuple[str, ...]
    body: str
    path: Path
    sha256: str
    body_line: int = 1  # the file's line where the Jinja2 blocks start (after front matter)

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def render(
        self,
        *,
        question: str = "",
        passages: Sequence[RetrievedPassage] = (),
        image: str | None = None,
        candidates: Sequence[str] = (),
        max_chars: int | None = None,
        max_seconds: float | None = None,
    ) -> ChatPrompt:
        """The chat prompt for these inputs (pure: same inputs, same prompt), within the
        bounds (`RenderLimit` beyond them; see `render`)."""
        return render(
            self,
            question=question,
            passages=passages,
            image=image,
            candidates=candidates,
            max_chars=max_chars,
            max_seconds=max_seconds,
        )

    def extract_answer(self, raw: str) -> str:
        """The answer inside a reader's raw output (the pattern's group, else the first line)."""
        if self.answer_pattern:
            match = re.search(self.answer_pattern, raw)
            if match:
                return match.group(1).strip()
        lines = [line.strip() for line in raw.strip().splitlines() if line.strip()]
        return lines[0] if lines else ""


def template_text(raw: bytes, path: str | Path) -> str:
    """A template file's text as the parser reads it: UTF-8, a BOM dropped, Windows line ends
    (CRLF) read as "\n" (the file's sha256 is still that of its bytes)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError("not UTF-8 text", path=str(path), line=line) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _place(path: Path, root: Path) -> tuple[str, str]:
    """(id, version) that a template file's place says: prompts/answer/mine/v2.j2 ->
    ("answer/mine", "2")."""
    rel = path.relative_to(root)
    return "/".join(rel.parts[:-1]), rel.stem[1:]


def _parse(path: Path, root: Path) -> PromptTemplate:
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read ({exc.strerror})", path=str(path)) from None
    text = template_text(raw, path)
    match = _FRONT.match(text)
    if not match:
        raise UserError("template has no front matter between '---' lines", path=str(path))
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        where = " ".join(str(exc).split())  # one line
        raise UserError(f"front matter is not YAML ({where})", path=str(path)) from None
    if not isinstance(meta, dict):
        raise UserError("front matter is not a YAML mapping", path=str(path))
    expected_id, expected_version = _place(path, root)
    if meta.get("id") != expected_id or str(meta.get("version")) != expected_version:
        raise UserError(
            f"front matter says {meta.get('id')}@{meta.get('version')}, the file's place says "
            f"{expected_id}@{expected_version}",
            path=str(path),
        )
    unknown = [i for i in meta.get("inputs") or [] if i not in INPUTS]
    if unknown:
        raise UserError(f"unknown inputs {unknown} (known: {', '.join(INPUTS)})", path=str(path))
    _check_meta(meta, path)
    return PromptTemplate(
        id=meta["id"],
        version=int(meta["version"]),
        description=str(meta.get("description", "")),
        inputs=tuple(meta.get("inputs") or ()),
        answer_pattern=meta.get("answer_pattern"),
        parent=meta.get("parent"),
        changelog=tuple(meta.get("changelog") or ()),
        body=text[match.end() :],
        body_line=text[: match.end()].count("\n") + 1,
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def _check_meta(meta: dict[str, Any], path: Path) -> None:
    """Types of the front matter fields (their values come from a file anyone can write)."""
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError("front matter 'version' must be a whole number", path=str(path))
    if not isinstance(meta.get("inputs") or [], list):
        raise UserError("front matter 'inputs' must be a list", path=str(path))
    if not isinstance(meta.get("changelog") or [], list):
        raise UserError("front matter 'changelog' must be a list", path=str(path))
    if not isinstance(meta.get("parent"), str | None):
        raise UserError("front matter 'parent' must be id@version", path=str(path))
    pattern = meta.get("answer_pattern")
    if pattern is not None:
        try:
            groups = re.compile(pattern).groups
        except (re.error, TypeError) as exc:
            raise UserError(
                f"answer_pattern is not a regular expression ({exc})", path=str(path)
            ) from None
        if groups < 1:
            raise UserError("answer_pattern needs a group: (...) around the answer", path=str(path))


class PromptLibrary:
    """All templates under a prompts/ folder, addressed as "id@version" (or "id" = latest).

    A template file that does not parse does not make the folder unusable: it is kept in
    `broken` (the ref its place says -> the `UserError` naming the file and the problem), the
    others are usable, and asking for it (or for its id's latest version, when it is the
    latest) raises its error; `validate` refuses the folder while one is broken.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_root()
        if not self.root.is_dir():
            raise UserError("prompts folder not found", path=str(self.root))
        self.templates: dict[str, PromptTemplate] = {}
        self.broken: dict[str, UserError] = {}
        for path in sorted(self.root.rglob("v*.j2")):
            try:
                template = _parse(path, self.root)
            except UserError as exc:
                template_id, version = _place(path, self.root)
                self.broken[f"{template_id}@{version}"] = exc
            else:
                self.templates[template.ref] = template

    def refs(self) -> list[str]:
        """The usable versions (not the `broken` ones)."""
        return sorted(self.templates)

    def versions(self, template_id: str) -> list[int]:
        """The version numbers of `template_id` that have a file, broken ones included."""
        good = [t.version for t in self.templates.values() if t.id == template_id]
        places = [ref.rpartition("@") for ref in self.broken]
        broken = [int(v) for i, _, v in places if i == template_id and v.isascii() and v.isdigit()]
        return good + broken

    def get(self, ref: str) -> PromptTemplate:
        if ref in self.broken:
            raise self.broken[ref]
        if "@" not in ref:
            versions = [t for t in self.templates.values() if t.id == ref]
            latest = max(self.versions(ref), default=None)
            if latest is not None and f"{ref}@{latest}" in self.broken:
                raise self.broken[f"{ref}@{latest}"]
            if versions:
                return max(versions, key=lambda t: t.version)
        elif ref in self.templates:
            return self.templates[ref]
        hint = did_you_mean(ref, [*self.templates, *{t.id for t in self.templates.values()}])
        raise UserError(f"unknown prompt template {ref!r}{hint}")

    def lock(self) -> dict[str, str]:
        path = self.root / LOCK
        invalid = "not a lock file: a JSON object {id@version: sha256}"
        lock = read_json(path, what=LOCK, missing={}, expect=dict, invalid=invalid)
        if not all(isinstance(v, str) for v in lock.values()):
            raise UserError(invalid, path=str(path))
        return lock

    def validate(self) -> list[str]:
        """Problems: edited locked versions, unknown parents, templates that do not render or
        render an empty prompt.

        Raises:
            UserError: a template file that does not parse (the first; the count of others).
        """
        if self.broken:
            first = next(iter(self.broken.values()))
            more = len(self.broken) - 1
            note = f" (and {more} more broken template{'s' * (more > 1)})" if more else ""
            raise UserError(f"{first.problem}{note}", path=first.path, line=first.line)
        problems = []
        for ref, sha in self.lock().items():
            template = self.templates.get(ref)
            if template is None:
                problems.append(f"{ref}: locked but missing")
            elif template.sha256 != sha:
                problems.append(f"{ref}: changed after it was locked; make a new version")
        for template in self.templates.values():
            if template.parent and template.parent not in self.templates:
                problems.append(f"{template.ref}: parent {template.parent} not found")
            try:
                sample_render(template)
            except UserError as exc:
                problems.append(f"{template.ref}: {exc}")
        return problems

    def update_lock(self) -> list[str]:
        """Lock every unlocked version; returns the refs added (locked ones never change)."""
        lock = self.lock()
        added = [ref for ref in self.refs() if ref not in lock]
        lock.update({ref: self.templates[ref].sha256 for ref in added})
        write_json(self.root / LOCK, dict(sorted(lock.items())))
        return added


def diff(a: PromptTemplate, b: PromptTemplate) -> str:
    """Unified diff of two template files."""
    return "".join(
        difflib.unified_diff(
            a.path.read_text(encoding="utf-8").splitlines(keepends=True),
            b.path.read_text(encoding="utf-8").splitlines(keepends=True),
            fromfile=a.ref,
            tofile=b.ref,
        )
    )
