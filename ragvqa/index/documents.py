"""The text the document encoder reads for a passage: the index's document template filled in.

Shared by the in-process and the Ray encoding paths of `ragvqa index build` and by rerankers
that encode passages the way the index did. A template is a `str.format` string over four
plain fields; anything else (attribute or index access such as `{text.__class__}`, positional
fields, a nested spec, a lone brace) is refused with one line before any passage is encoded.
"""

from __future__ import annotations

import functools
import string

from ragvqa.errors import UserError
from ragvqa.kb.chunking import display_title
from ragvqa.schema.components import DEFAULT_TEMPLATE  # noqa: F401 (this module's name for it)
from ragvqa.types import Passage

# ReT's; text encoders read "{display_title}. {text}" (ragvqa.models.encoders.DOC_TEMPLATES,
# the default an index build picks by encoder kind)
FIELDS = ("display_title", "title", "section", "text")


@functools.lru_cache(maxsize=16)
def check_template(template: str) -> None:
    """Refuse a document template that is not a format string over `FIELDS` alone."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise UserError(f"--doc-template is not a format string ({exc})") from None
    for _, field, spec, _ in parts:
        if field is None:
            continue
        if field not in FIELDS:
            raise UserError(
                f"unknown field {{{field}}} in --doc-template (use {', '.join(FIELDS)})"
            )
        if "{" in (spec or ""):
            raise UserError(f"a field inside a format spec in --doc-template: {{{field}:{spec}}}")


def document_text(passage: Passage, template: str) -> str:
    """The text the document encoder reads for a passage."""
    check_template(template)
    try:
        return template.format(
            display_title=display_title(passage),
            title=passage.title,
            section=passage.section_title,
            text=passage.text,
        )
    except ValueError as exc:  # a format spec that does not apply to text, e.g. {text:d}
        raise UserError(f"--doc-template does not apply to passage text ({exc})") from None
