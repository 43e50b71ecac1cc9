"""The bounds of a template render (`ragvqa.prompt_render.render`), enforced inside Jinja2's
sandbox.

No string, list or number a template makes, and no prompt it renders, may pass `max_chars`
characters: every operation that makes a value (operators, calls, string methods, filters, `~`,
captured output, `lipsum`) is checked before the value is made, so `'x' * 100000000` is refused
before anything is allocated; integers stay under `MAX_INT_BITS` bits; loops and calls keep time,
and a render stops after `max_seconds`. Passing a bound raises `Exceeded` inside the render,
which `render` turns into a `RenderLimit` (a one-line `UserError`, HTTP 413 for size, 400 for
time). `render_bounds` sets tighter bounds for one thread or task (`ragvqa serve`).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ragvqa.errors import UserError

# what one render may make: characters (of any string, list or prompt) and seconds; far above
# any reader's context (a prompt is fitted to it afterwards), far below what stalls a machine
MAX_RENDER_CHARS = 1_000_000
MAX_RENDER_SECONDS = 10.0
# tighter bounds for the renders of one thread or task (`render_bounds`: the server's)
BOUNDS: ContextVar[tuple[int, float] | None] = ContextVar("ragvqa_render_bounds", default=None)
MAX_INT_BITS = 4096  # integers a template computes (10 ** 10 ** 10 is refused, not computed)
DIGITS = re.compile(r"\d+")


@contextmanager
def render_bounds(max_chars: int, max_seconds: float) -> Iterator[None]:
    """Renders in this block (this thread or task: a context variable) are bounded by
    `max_chars` and `max_seconds` when they do not say otherwise (`ragvqa serve` sets them
    for every render of a client's question or template)."""
    token = BOUNDS.set((max_chars, max_seconds))
    try:
        yield
    finally:
        BOUNDS.reset(token)


class RenderLimit(UserError):
    """A template that renders (or makes on the way) more than a render may: `status` 413 for
    its size, 400 for its time (the server answers with it)."""

    def __init__(self, template: Any, problem: str, status: int = 413):  # a PromptTemplate
        super().__init__(f"template {template.ref} {problem}", path=str(template.path))
        self.status = status


class Exceeded(Exception):
    """Raised inside a render when it passes a bound (turned into a `RenderLimit`)."""

    def __init__(self, problem: str, status: int = 413):
        super().__init__(problem)
        self.status = status


class Budget:
    """One render's bounds: `max_chars` for any value and for the prompt, a deadline."""

    def __init__(self, max_chars: int, max_seconds: float):
        self.max_chars, self.max_seconds = max_chars, max_seconds
        self.deadline = time.monotonic() + max_seconds
        self.spent = 0

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise Exceeded(f"takes longer than {self.max_seconds:g} s to render", 400)

    def size(self, chars: int, what: str = "a value") -> None:
        """Refuse a value of `chars` characters (or items) before it is made."""
        if chars > self.max_chars:
            raise Exceeded(f"makes {what} of {chars:,} characters (at most {self.max_chars:,})")

    def spend(self, chars: int) -> None:
        """Count rendered prompt text against the bound."""
        self.spent += chars
        if self.spent > self.max_chars:
            raise Exceeded(f"renders more than {self.max_chars:,} characters")

    def integer(self, value: Any) -> None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > MAX_INT_BITS:
                raise Exceeded(f"computes an integer of more than {MAX_INT_BITS} bits")

    def argument(self, value: Any) -> None:
        """A width, count or repeat given to a string method or filter."""
        self.integer(value)
        if isinstance(value, int) and abs(value) > self.max_chars:
            raise Exceeded(f"asks for {value:,} characters (at most {self.max_chars:,})")

    def format(self, text: Any, args: Sequence[Any]) -> None:
        """`'%*s' % ...`, `'{:>999999999}'.format(...)`: widths within the bound."""
        if isinstance(text, str):
            for digits in DIGITS.findall(text):
                if len(digits) > 12 or int(digits) > self.max_chars:
                    raise Exceeded(f"formats a width of {digits} (at most {self.max_chars:,})")
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


def _guard_filter(name: str, function: Callable[..., Any], budget: Budget) -> Callable[..., Any]:
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


def bounded_sandbox(max_chars: int, max_seconds: float) -> Any:
    """A fresh sandbox environment whose renders stay within `max_chars` and `max_seconds` (its
    clock starts now). One per render: the bounds are the environment's own."""
    return _sandbox_class()(max_chars, max_seconds)


@functools.cache
def _sandbox_class() -> type:
    """The sandbox's class, made once (jinja2 is imported on first use, not with this module).
    Its code generation depends on nothing but the class, so code compiled by one of its
    environments runs in any other (`ragvqa.prompt_render` keeps it per template body)."""
    from jinja2 import DictLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _BoundedSandbox(ImmutableSandboxedEnvironment):
        """Jinja2's immutable sandbox with every way a template makes a value bounded: binary
        operators (`*`, `**`, `+`, `%`), calls (string methods, macros, globals), filters,
        `~`, captured output (`{% set %}` blocks, macros) and loops, which also keep time."""

        intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/", "-"})
        intercepted_unops = frozenset({"-", "+"})

        def __init__(self, max_chars: int, max_seconds: float) -> None:
            super().__init__(
                loader=DictLoader({}),  # no other template can be loaded (`_refuse_loading`)
                undefined=StrictUndefined,
                autoescape=False,
                keep_trailing_newline=False,
                trim_blocks=True,
                lstrip_blocks=True,
                optimized=False,  # nothing is computed while compiling
            )
            self.budget = Budget(max_chars, max_seconds)
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
                    if bits > MAX_INT_BITS:
                        budget.integer(1 << bits)
            elif operator == "**" and isinstance(left, int) and isinstance(right, int):
                if right > 0 and abs(left) > 1 and left.bit_length() * right > MAX_INT_BITS:
                    budget.integer(1 << (MAX_INT_BITS + 1))
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

    return _BoundedSandbox


def _bounded_lipsum(function: Callable[..., str], budget: Budget) -> Callable[..., str]:
    """Jinja2's `lipsum(n, html, min, max)` (n paragraphs of up to max words), bounded."""

    @functools.wraps(function)
    def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
        budget.size(int(n) * int(max) * 12)  # a word and its space: at most 12 characters
        return function(n, html, min, max)

    return lipsum


_STEPS = "_ragvqa_loop_steps"  # the loop wrapper's name in a template's globals


class _Steps:
    """A loop's iterable, its length kept (for `loop.length`), the clock checked at each item."""

    def __init__(self, iterable: Any, budget: Budget):
        self.iterable, self.budget = iterable, budget

    def __len__(self) -> int:
        return len(self.iterable)

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            self.budget.tick()
            yield item


def count_loops(tree: Any) -> None:
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
