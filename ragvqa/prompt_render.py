"""Rendering a prompt template: a pure function of the template and its inputs, in Jinja2's
immutable sandbox within the bounds of `ragvqa.prompt_sandbox`.

Retrieved text is data: special tokens and role markers inside passages, candidates and the
question are neutralised before rendering (`neutralise`). The image is `{{ image }}` in a
template and becomes an image part of the message, never a model token. Tags that read another
template file (`include`, `import`, `extends`) are refused: a template is one file. A render
with no text in any message is an error.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from types import CodeType
from typing import TYPE_CHECKING, Any

from ragvqa.errors import UserError
from ragvqa.prompt_sandbox import (
    BOUNDS,
    MAX_RENDER_CHARS,
    MAX_RENDER_SECONDS,
    Exceeded,
    RenderLimit,
    bounded_sandbox,
    count_loops,
)
from ragvqa.types import ChatMessage, ChatPrompt, ImagePart, RetrievedPassage, TextPart

if TYPE_CHECKING:
    from ragvqa.prompts import PromptTemplate

ROLES = ("system", "user", "assistant")
# compiled template code by body (`_code`): a server's playground drafts are many bodies
_CODE_KEPT = 256
_CODE: OrderedDict[str, CodeType] = OrderedDict()
_CODE_LOCK = threading.Lock()
_IMAGE = "\x00IMAGE\x00"
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
    within `max_seconds` (`ragvqa.prompt_sandbox`): beyond them it is a `RenderLimit`. Not given,
    they are those of `render_bounds` around the call, else `MAX_RENDER_CHARS` and
    `MAX_RENDER_SECONDS`."""
    from jinja2 import TemplateError
    from jinja2.sandbox import SecurityError

    chars, seconds = BOUNDS.get() or (MAX_RENDER_CHARS, MAX_RENDER_SECONDS)
    max_chars = chars if max_chars is None else max_chars
    max_seconds = seconds if max_seconds is None else max_seconds

    given = {"question": question, "passages": passages, "candidates": candidates}
    for name in ("question", "passages", "candidates"):
        if name in template.inputs and not given[name]:
            raise UserError(f"template {template.ref} needs input '{name}'")
    env = bounded_sandbox(max_chars, max_seconds)
    variables = {
        "question": neutralise(question),
        "passages": _passage_vars(passages),
        "candidates": [neutralise(c) for c in candidates],
        "image": _IMAGE if image is not None else "",
    }
    try:
        compiled = env.template_class.from_code(env, _code(env, template), env.make_globals(None))
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
    except Exceeded as exc:
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


def _code(env: Any, template: PromptTemplate) -> CodeType:
    """The template's body parsed, checked (`_refuse_loading`), its loops counted and compiled
    to Python code: kept per body (at most `_CODE_KEPT`), since parsing and compiling are most
    of a render's time and the code runs in any sandbox environment (`bounded_sandbox`), each
    render with its own bounds. A body that does not compile is not kept: it fails each time."""
    with _CODE_LOCK:
        code = _CODE.get(template.body)
        if code is not None:
            _CODE.move_to_end(template.body)
            return code
    tree = env.parse(template.body)
    _refuse_loading(template, tree)
    count_loops(tree)
    code = env.compile(tree)
    with _CODE_LOCK:
        _CODE[template.body] = code
        while len(_CODE) > _CODE_KEPT:
            _CODE.popitem(last=False)
    return code


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
