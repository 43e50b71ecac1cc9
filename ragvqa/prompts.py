"""Versioned prompt templates, rendered by a pure function into model-neutral `ChatPrompt`s.

A template is one file, `prompts/<group>/<name>/v<N>.j2`: a YAML front matter between `---`
lines (id, version, description, inputs, answer_pattern, parent, changelog) and Jinja2 blocks
named after chat roles (`system`, `user`, optionally `assistant`). Rendering uses
StrictUndefined, so a misspelt variable is an error, not an empty string. The image is placed
with `{{ image }}` and becomes an image part of the message, never a model token. Retrieved text
is data: special tokens and role markers inside passages are neutralised before rendering.
Templates render in Jinja2's immutable sandbox: a template from a folder of one's own (`--root`)
can read its inputs but not reach Python (no `__globals__`, `os.popen`, no changing inputs).
A render is bounded inside Jinja2 itself (`_BoundedSandbox`): no string, list or number it makes
and no prompt it renders may pass `max_chars` characters (`'x' * 100000000` is refused before
anything is allocated), and it stops after `max_seconds`; a template that passes a bound is a
`RenderLimit`, a one-line `UserError`.

A version never changes once results cite it: `prompts/LOCK.json` records the sha256 of every
version, and `ragvqa prompts validate` fails when a locked file was edited (make a new version).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragvqa.errors import UserError
from ragvqa.io import write_json
from ragvqa.resources import resource_dir
from ragvqa.types import ChatMessage, ChatPrompt, ImagePart, RetrievedPassage, TextPart

ROLES = ("system", "user", "assistant")
INPUTS = ("question", "passages", "image", "candidates")
LOCK = "LOCK.json"
_IMAGE = "\x00IMAGE\x00"
# front matter between "---" lines (CRLF files are read with "\n" line ends: `template_text`)
_FRONT = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.S)
# tags that read another template file: a template is one file, so they are refused
_LOADING_TAGS = {
    "Include": "include",
    "Import": "import",
    "FromImport": "from",
    "Extends": "extends",
}
# special tokens of chat templates in angle brackets: "<|im_start|>" (ChatML: Qwen), "<s>",
# "</s>", "<bos>", "<start_of_turn>" (Gemma), "<|eot_id|>", "<|start_header_id|>" (Llama 3),
# "<｜User｜>" (DeepSeek, full-width bars), "<|user|>" (Phi, the demo reader), "<image>", "<<SYS>>"
_TAG = re.compile(r"<(/?[A-Za-z_|\uff5c][^<>\s]{0,40})>")
# control tokens in square brackets: "[INST]", "[/INST]" (Mistral, Llama 2), "[SYSTEM_PROMPT]",
# "[TOOL_CALLS]", "[IMG]", "[control_8]"; "[1]", "[a]" and "[citation needed]" stay as they are
_BRACKET = re.compile(r"\[(/?)([A-Z][A-Z_]{2,30}|control_\d+)\]")
# a line that poses as a turn: "User:", "ASSISTANT:", "### System:", "Human:" (any case)
_ROLE_LINE = re.compile(r"(?im)^[ \t]*(?:#{1,6}[ \t]*)?(user|assistant|system|human)[ \t]*:")
# line breaks other than "\n" (the role-line rule sees lines as the reader does)
_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# what one render may make: characters (of any string, list or prompt) and seconds; far above
# any reader's context (a prompt is fitted to it afterwards), far below what stalls a machine
MAX_RENDER_CHARS = 1_000_000
MAX_RENDER_SECONDS = 10.0
# tighter bounds for the renders of one thread or task (`render_bounds`: the server's)
_BOUNDS: ContextVar[tuple[int, float] | None] = ContextVar("ragvqa_render_bounds", default=None)
_MAX_INT_BITS = 4096  # integers a template computes (10 ** 10 ** 10 is refused, not computed)
_DIGITS = re.compile(r"\d+")


def default_root() -> Path:
    """The prompt templates ragvqa ships (the repository's top-level prompts/ folder)."""
    return resource_dir("prompts")


def neutralise(text: str) -> str:
    """Retrieved text (and the question) as inert data: chat-template tokens and role markers
    are defused, so no reader sees a turn or a special token that the template did not put.

    "<|im_start|>" -> "‹|im_start|›", "<image>" -> "‹image›", "[INST]" -> "⟦INST⟧",
    a line starting "USER:" or "assistant:" -> "User said:", "Assistant said:"; NUL characters
    are dropped and other line breaks ("\\r", U+2028, ...) become "\\n".
    """
    text = _BREAKS.sub("\n", text.replace("\x00", ""))
    text = _TAG.sub(lambda m: f"‹{m.group(1)}›", text)
    text = _BRACKET.sub(lambda m: f"⟦{m.group(1)}{m.group(2)}⟧", text)
    return _ROLE_LINE.sub(lambda m: f"{m.group(1).capitalize()} said:", text)


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
        close = difflib.get_close_matches(
            ref, [*self.templates, *{t.id for t in self.templates.values()}], n=1
        )
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown prompt template {ref!r}{hint}")

    def lock(self) -> dict[str, str]:
        path = self.root / LOCK
        if not path.is_file():
            return {}
        try:
            lock = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            lock = None
        if not isinstance(lock, dict) or not all(isinstance(v, str) for v in lock.values()):
            raise UserError("not a lock file: a JSON object {id@version: sha256}", path=str(path))
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


def _passage_vars(passages: Sequence[RetrievedPassage]) -> list[dict[str, Any]]:
    out = []
    for rp in passages:
        p = rp.passage
        title = f"{p.title} / {p.section_title}" if p.section_title else p.title
        out.append(
            {
                "title": neutralise(p.title),
                "section": neutralise(p.section_title),
                "display_title": neutralise(title),
                "text": neutralise(p.text),
                "page_id": p.page_id,
                "score": rp.score,
                "rank": rp.rank + 1,
            }
        )
    return out


def _parts(text: str, image: str | None) -> tuple[TextPart | ImagePart, ...]:
    parts: list[TextPart | ImagePart] = []
    for i, piece in enumerate(text.split(_IMAGE)):
        if i and image is not None:
            parts.append(ImagePart(image))
        if piece.strip():
            parts.append(TextPart(piece.strip()))
    return tuple(parts)


def render(
    template: PromptTemplate,
    *,
    question: str = "",
    passages: Sequence[RetrievedPassage] = (),
    image: str | None = None,
    candidates: Sequence[str] = (),
    max_chars: int | None = None,
    max_seconds: float | None = None,
) -> ChatPrompt:
    """Render a template (see `PromptTemplate.render`) in Jinja2's immutable sandbox: reading
    an attribute that starts with "_" (`__globals__`, `__class__`), calling an unsafe method or
    changing a list or a dict fails with a one-line `UserError` instead. Every value the
    template makes and the prompt itself stay within `max_chars` characters, and the render
    within `max_seconds` (`_BoundedSandbox`): beyond them it is a `RenderLimit`. Not given,
    they are those of `render_bounds` around the call, else `MAX_RENDER_CHARS` and
    `MAX_RENDER_SECONDS`."""
    from jinja2 import TemplateError
    from jinja2.sandbox import SecurityError

    chars, seconds = _BOUNDS.get() or (MAX_RENDER_CHARS, MAX_RENDER_SECONDS)
    max_chars = chars if max_chars is None else max_chars
    max_seconds = seconds if max_seconds is None else max_seconds

    given = {"question": question, "passages": passages, "candidates": candidates}
    for name in ("question", "passages", "candidates"):
        if name in template.inputs and not given[name]:
            raise UserError(f"template {template.ref} needs input '{name}'")
    env = _bounded_sandbox(max_chars, max_seconds)
    variables = {
        "question": neutralise(question),
        "passages": _passage_vars(passages),
        "candidates": [neutralise(c) for c in candidates],
        "image": _IMAGE if image is not None else "",
    }
    try:
        tree = env.parse(template.body)
        _refuse_loading(template, tree)
        _count_loops(tree)
        compiled = env.from_string(tree)
        namespace = compiled.root_render_func.__globals__  # the template's module
        namespace["str_join"] = namespace["markup_join"] = env.bounded_join  # `a ~ b`
        context = compiled.new_context(variables)
        messages = []
        for role in ROLES:
            if role in compiled.blocks:
                text = env.concat(compiled.blocks[role](context)).strip()
                if text or role != "assistant":
                    messages.append(ChatMessage(role, _parts(text, image)))
                env.budget.spend(len(text))
    except _Exceeded as exc:
        raise RenderLimit(template, str(exc), exc.status) from None
    except SecurityError as exc:
        raise UserError(
            f"template {template.ref} is refused by the sandbox: {_line(exc)}",
            path=str(template.path),
        ) from None
    except RecursionError:
        raise UserError(
            f"template {template.ref} does not render: nested too deeply",
            path=str(template.path),
        ) from None
    # OverflowError: the sandbox's range() limit; the others: `1 / 0`, int("x") and the like
    except (TemplateError, ArithmeticError, ValueError, TypeError, LookupError) as exc:
        raise UserError(
            f"template {template.ref} does not render: {_line(exc)}", path=str(template.path)
        ) from None
    if not any(message.text.strip() for message in messages):
        problem = "renders no user message and no text at all (an empty prompt)"
        raise UserError(f"template {template.ref} {problem}", path=str(template.path))
    return ChatPrompt(tuple(messages), template=template.ref, template_hash=template.sha256)


# -- the bounds of a render ---------------------------------------------------------------------
@contextmanager
def render_bounds(max_chars: int, max_seconds: float) -> Iterator[None]:
    """Renders in this block (this thread or task: a context variable) are bounded by
    `max_chars` and `max_seconds` when they do not say otherwise (`ragvqa serve` sets them
    for every render of a client's question or template)."""
    token = _BOUNDS.set((max_chars, max_seconds))
    try:
        yield
    finally:
        _BOUNDS.reset(token)


class RenderLimit(UserError):
    """A template that renders (or makes on the way) more than a render may: `status` 413 for
    its size, 400 for its time (the server answers with it)."""

    def __init__(self, template: PromptTemplate, problem: str, status: int = 413):
        super().__init__(f"template {template.ref} {problem}", path=str(template.path))
        self.status = status


class _Exceeded(Exception):
    """Raised inside a render when it passes a bound (turned into a `RenderLimit`)."""

    def __init__(self, problem: str, status: int = 413):
        super().__init__(problem)
        self.status = status


class _Budget:
    """One render's bounds: `max_chars` for any value and for the prompt, a deadline."""

    def __init__(self, max_chars: int, max_seconds: float):
        self.max_chars, self.max_seconds = max_chars, max_seconds
        self.deadline = time.monotonic() + max_seconds
        self.spent = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Exceeded(f"takes longer than {self.max_seconds:g} s to render", 400)

    def size(self, chars: int, what: str = "a value") -> None:
        """Refuse a value of `chars` characters (or items) before it is made."""
        if chars > self.max_chars:
            raise _Exceeded(f"makes {what} of {chars:,} characters (at most {self.max_chars:,})")

    def spend(self, chars: int) -> None:
        """Count rendered prompt text against the bound."""
        self.spent += chars
        if self.spent > self.max_chars:
            raise _Exceeded(f"renders more than {self.max_chars:,} characters")

    def integer(self, value: Any) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > _MAX_INT_BITS:
                raise _Exceeded(f"computes an integer of more than {_MAX_INT_BITS} bits")

    def argument(self, value: Any) -> None:
        """A width, count or repeat given to a string method or filter."""
        self.integer(value)
        if isinstance(value, int) and abs(value) > self.max_chars:
            raise _Exceeded(f"asks for {value:,} characters (at most {self.max_chars:,})")

    def format(self, text: Any, args: Sequence[Any]) -> None:
        """`'%*s' % ...`, `'{:>999999999}'.format(...)`: widths within the bound."""
        if isinstance(text, str):
            for digits in _DIGITS.findall(text):
                if len(digits) > 12 or int(digits) > self.max_chars:
                    raise _Exceeded(f"formats a width of {digits} (at most {self.max_chars:,})")
        for arg in args:
            self.argument(arg)
        if isinstance(text, str):  # each field may hold the longest value
            longest = max((len(str(a)) for a in args), default=0)
            fields = text.count("{") + text.count("%")
            self.size(len(text) + fields * longest)


def _length(value: Any) -> int:
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        return len(value)
    return 0


def _iterable(value: Any) -> list[Any]:
    return list(value.values() if isinstance(value, dict) else value)


def _estimate(name: str, value: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> int:
    """The size of what string method or filter `name` makes from `value` (0: no more than
    its input, checked after it ran)."""
    every = [*args, *kwargs.values()]
    if name in ("center", "ljust", "rjust", "zfill") and every:
        return max(_length(value), *(a for a in every if isinstance(a, int)), 0)
    if name == "indent" and isinstance(value, str):
        width = kwargs.get("width", args[0] if args else 4)
        width = len(width) if isinstance(width, str) else int(width or 0)
        return len(value) + (value.count("\n") + 1) * max(width, 0)
    if name == "expandtabs" and isinstance(value, str):
        size = kwargs.get("tabsize", args[0] if args else 8)
        return len(value) + value.count("\t") * max(int(size), 0)
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = value.count(old) if old else len(value) + 1
        return len(value) + count * max(len(new) - len(old), 0)
    if name == "translate" and isinstance(value, str) and args and isinstance(args[0], dict):
        longest = max((_length(v) for v in args[0].values()), default=1)
        return len(value) * max(longest, 1)
    return 0


def _guard_filter(name: str, function: Callable[..., Any], budget: _Budget) -> Callable[..., Any]:
    """A filter within the render's bounds: no width or count beyond them, no result larger."""
    skip = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget.tick()
        value, rest = (args[skip], args[skip + 1 :]) if len(args) > skip else (None, ())
        for arg in (*rest, *kwargs.values()):
            budget.argument(arg)
        if name == "format":
            budget.format(value, [*rest, *kwargs.values()])
        if name in ("join", "sum") and value is not None:
            items = _iterable(value)
            parts = sum(_length(i) if name == "sum" else len(str(i)) for i in items)
            sep = rest[0] if rest else kwargs.get("d", "")
            budget.size(parts + _length(sep) * max(len(items) - 1, 0))
            value = items
            args = (*args[:skip], items, *rest)
        if name in ("batch", "slice") and value is not None:
            budget.size(_length(value) + sum(a for a in rest[:1] if isinstance(a, int)))
        budget.size(_estimate(name, value, rest, kwargs))
        result = function(*args, **kwargs)
        budget.size(_length(result))
        return result

    return bounded


def _bounded_sandbox(max_chars: int, max_seconds: float) -> Any:
    from jinja2 import DictLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _BoundedSandbox(ImmutableSandboxedEnvironment):
        """Jinja2's immutable sandbox with every way a template makes a value bounded: binary
        operators (`*`, `**`, `+`, `%`), calls (string methods, macros, globals), filters,
        `~`, captured output (`{% set %}` blocks, macros) and loops, which also keep time."""

        intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/", "-"})
        intercepted_unops = frozenset({"-", "+"})

        def __init__(self) -> None:
            super().__init__(
                loader=DictLoader({}),  # no other template can be loaded (`_refuse_loading`)
                undefined=StrictUndefined,
                autoescape=False,
                keep_trailing_newline=False,
                trim_blocks=True,
                lstrip_blocks=True,
                optimized=False,  # nothing is computed while compiling
            )
            self.budget = _Budget(max_chars, max_seconds)
            self.filters = {n: _guard_filter(n, f, self.budget) for n, f in self.filters.items()}
            self.globals["lipsum"] = _bounded_lipsum(self.globals["lipsum"], self.budget)
            self.globals[_STEPS] = self.steps

        def steps(self, iterable: Any) -> Iterator[Any]:
            """A loop's items, the clock checked at each (empty nested loops keep time too)."""
            return _Steps(iterable, self.budget)

        def concat(self, pieces: Any) -> str:  # type: ignore[override]
            """Captured output (`{% set %}` blocks, macros, `{% filter %}`), bounded as it grows."""
            out, total = [], 0
            for piece in pieces:
                total += len(piece)
                self.budget.size(total, "output")
                out.append(piece)
            self.budget.tick()
            return "".join(out)

        def bounded_join(self, values: Any) -> str:
            """`a ~ b ~ c`."""
            return self.concat(map(str, values))

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            budget = self.budget
            budget.tick()
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    if isinstance(times, int) and _length(seq):
                        budget.size(_length(seq) * max(times, 0))
                if isinstance(left, int) and isinstance(right, int):
                    bits = left.bit_length() + right.bit_length()
                    if bits > _MAX_INT_BITS:
                        budget.integer(1 << bits)
            elif operator == "**" and isinstance(left, int) and isinstance(right, int):
                if right > 0 and abs(left) > 1 and left.bit_length() * right > _MAX_INT_BITS:
                    budget.integer(1 << (_MAX_INT_BITS + 1))
            elif operator == "+":
                budget.size(_length(left) + _length(right))
            elif operator == "%" and isinstance(left, str):
                values = right if isinstance(right, tuple) else [right]
                if isinstance(right, dict):
                    values = list(right.values())
                budget.format(left, values)
            result = super().call_binop(context, operator, left, right)
            budget.size(_length(result))
            budget.integer(result)
            return result

        def wrap_str_format(self, value: Any) -> Any:
            """`'...'.format(...)` and `.format_map(...)`: widths and size bounded."""
            wrapped = super().wrap_str_format(value)
            if wrapped is None:
                return None
            text, budget = value.__self__, self.budget

            def bounded(*args: Any, **kwargs: Any) -> str:
                budget.tick()
                given = [*args, *kwargs.values()]
                if value.__name__ == "format_map" and args and isinstance(args[0], dict):
                    given = list(args[0].values())
                budget.format(text, given)
                result = wrapped(*args, **kwargs)
                budget.size(len(result))
                return result

            return bounded

        def call_unop(self, context: Any, operator: str, arg: Any) -> Any:
            self.budget.tick()
            return super().call_unop(context, operator, arg)

        def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            budget = self.budget
            budget.tick()
            owner = getattr(obj, "__self__", None)
            if isinstance(owner, str):
                name = getattr(obj, "__name__", "")
                for arg in (*args, *kwargs.values()):
                    budget.argument(arg)
                if name == "join":
                    items = _iterable(args[0]) if args else []
                    total = sum(len(str(i)) for i in items)
                    budget.size(total + len(owner) * max(len(items) - 1, 0))
                    args = (items, *args[1:])
                budget.size(_estimate(name, owner, args, kwargs))
            result = super().call(context, obj, *args, **kwargs)
            budget.size(_length(result))
            budget.integer(result)
            return result

        def getattr(self, obj: Any, attribute: str) -> Any:
            self.budget.tick()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            self.budget.tick()
            return super().getitem(obj, argument)

    return _BoundedSandbox()


def _bounded_lipsum(function: Callable[..., str], budget: _Budget) -> Callable[..., str]:
    """Jinja2's `lipsum(n, html, min, max)` (n paragraphs of up to max words), bounded."""

    @functools.wraps(function)
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
        budget.size(int(n) * int(max) * 12)  # a word and its space: at most 12 characters
        return function(n, html, min, max)

    return lipsum


_STEPS = "_ragvqa_loop_steps"  # the loop wrapper's name in a template's globals


class _Steps:
    """A loop's iterable, its length kept (for `loop.length`), the clock checked at each item."""

    def __init__(self, iterable: Any, budget: _Budget):
        self.iterable, self.budget = iterable, budget

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            self.budget.tick()
            yield item


def _count_loops(tree: Any) -> None:
    """Every `{% for %}` iterates through `_Steps`, so that loops keep time even when their
    body calls nothing."""
    from jinja2 import nodes

    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Call(
            nodes.Name(_STEPS, "load", lineno=loop.lineno),
            [loop.iter],
            [],
            None,
            None,
            lineno=loop.lineno,
        )


def _refuse_loading(template: PromptTemplate, tree: Any) -> None:
    """A template is one file: `{% include %}`, `{% import %}`, `{% from ... import %}` and
    `{% extends %}` are refused before rendering, naming the tag and its line in the file."""
    from jinja2 import nodes

    kinds = tuple(getattr(nodes, name) for name in _LOADING_TAGS)
    for node in tree.find_all(kinds):
        tag = _LOADING_TAGS[type(node).__name__]
        raise UserError(
            f"template {template.ref} uses {{% {tag} %}}: a template is one file, it cannot "
            "include, import or extend another",
            path=str(template.path),
            line=template.body_line + node.lineno - 1,
        )


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def sample_render(template: PromptTemplate) -> ChatPrompt:
    """Render with fixed sample inputs (what `validate` and the golden tests use)."""
    from ragvqa.types import Passage

    passages = [
        RetrievedPassage(
            Passage(
                "p1",
                "It was consecrated in 1345 by Bishop John.",
                title="St Mary's Church",
                section_title="History",
                page_id="wiki/St_Mary",
            ),
            0.83,
            0,
        ),
        RetrievedPassage(
            Passage(
                "p2",
                "The church stands beside the river <|im_end|>.",
                title="St Mary's Church",
                page_id="wiki/St_Mary",
            ),
            0.71,
            1,
        ),
    ]
    return template.render(
        question="When was this church consecrated?",
        passages=passages,
        image="church.jpg",
        candidates=["St Mary's Church", "St Paul's"],
    )


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
