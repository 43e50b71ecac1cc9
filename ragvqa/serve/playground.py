"""The prompt playground's templates: an edited template file read as a draft, and saved as a
new version, both through `ragvqa.prompt_versions.new_version` (the one way a version is made).

The page edits a whole template file (front matter and Jinja2 blocks, see `ragvqa.prompts`).
Whatever the edit, three front-matter fields are not the user's: `id` stays the base template's,
`version` becomes the next free version of that id and `parent` the version it was edited from.
A draft is that version checked and not written (`dry_run`), so its renders are what the saved
file's will be; saving appends the user's changelog line, never overwrites a file and locks the
version in `LOCK.json` at once. Errors become `RequestError`s with the status the client needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ragvqa.errors import UserError
from ragvqa.prompt_versions import new_version
from ragvqa.prompts import PromptLibrary, PromptTemplate, sample_render
from ragvqa.serve.errors import RequestError

MAX_TEMPLATE_CHARS = 100_000


def check_answer_template(template: PromptTemplate) -> PromptTemplate:
    """`template` when it can answer a question: not a reranking template (those need
    candidates), and one whose render has a user turn (an edit can delete every block). Its
    sample render is bounded like every render of the server (`ragvqa.prompts.render_bounds`
    around the call); a problem is a `RequestError` without the server's paths."""
    if "candidates" in template.inputs:
        raise RequestError(f"template {template.ref} is a reranking template, not an answer one")
    with client_errors():
        messages = sample_render(template).messages
    if not any(m.role == "user" and m.text for m in messages):
        raise RequestError(f"template {template.ref} renders no user message (a user block)")
    return template


@contextmanager
def client_errors() -> Iterator[None]:
    """A template's `UserError` as a `RequestError` for the client: its problem without the
    server's path, with its status (413 for a render over the bounds)."""
    try:
        yield
    except RequestError:
        raise
    except UserError as exc:
        raise RequestError(exc.problem, _status(exc)) from None


def draft(library: PromptLibrary, base_ref: str, text: str) -> PromptTemplate:
    """An edited copy of `base_ref` as the next version it would be saved as (not written)."""
    base = library.get(base_ref)
    return check_answer_template(_new_version(library, base, text, None, dry_run=True))


def save(library: PromptLibrary, base_ref: str, text: str, note: str) -> PromptTemplate:
    """Write an edited copy of `base_ref` as the next version of its id, with the changelog
    line `note` (409 when that version's file exists: a version is never overwritten)."""
    if not note.strip():
        raise RequestError("say what changed: the changelog line is empty")
    base = library.get(base_ref)
    check_answer_template(_new_version(library, base, text, note, dry_run=True))
    return _new_version(library, base, text, note, dry_run=False)


def _new_version(
    library: PromptLibrary, base: PromptTemplate, text: str, note: str | None, *, dry_run: bool
) -> PromptTemplate:
    if len(text) > MAX_TEMPLATE_CHARS:
        raise RequestError(f"template longer than {MAX_TEMPLATE_CHARS:,} characters", status=413)
    try:
        return new_version(
            library.root, base.id, text, from_ref=base.ref, changelog=note, dry_run=dry_run
        )
    except UserError as exc:
        if exc.problem.startswith("exists"):
            raise RequestError(f"{exc.path} exists: a saved version never changes", 409) from None
        if exc.problem.startswith("cannot write"):
            raise RequestError(str(exc), status=403) from None
        raise RequestError(exc.problem, _status(exc)) from None


def _status(exc: BaseException | None) -> int:
    """The HTTP status of a template's error: a `RenderLimit`'s own (413 for its size), also
    when another error was raised while handling it (`new_version` says which version)."""
    while exc is not None:
        if isinstance(getattr(exc, "status", None), int):
            return exc.status  # type: ignore[attr-defined]
        exc = exc.__context__
    return 400
