"""Fitting a prompt into the reader's context window, by a stated rule.

Rule: while the rendered prompt plus `max_tokens` of answer is longer than the context, drop the
lowest-ranked passage; when one passage is left and it is still too long, cut its text to the
words that fit. The number of passages dropped or cut is recorded in the prompt
(`ChatPrompt.truncated_passages`), so a report can show which answers read less evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ragvqa.errors import UserError
from ragvqa.generate.base import plain_text
from ragvqa.types import ChatPrompt, RetrievedPassage

ImageTokens = 576  # a typical LLaVA-style image cost; backends may count images exactly


def chat_token_counter(
    tokenizer: Any, image_tokens: int = ImageTokens, *, layout: str = "chat"
) -> Callable[[ChatPrompt], int]:
    """Counts a prompt's tokens as the reader will see them: through the tokenizer's chat
    template (images at a fixed cost), or for the plain layout the text as it is with the
    tokenizer's own special tokens."""

    def count(prompt: ChatPrompt) -> int:
        if layout == "plain":
            return len(tokenizer(plain_text(prompt))["input_ids"])
        messages = [{"role": m.role, "content": m.text} for m in prompt.messages]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return len(ids) + image_tokens * len(prompt.images())

    return count


def fit_prompt(
    render: Callable[[Sequence[RetrievedPassage]], ChatPrompt],
    passages: Sequence[RetrievedPassage],
    count_tokens: Callable[[ChatPrompt], int],
    context: int,
    max_tokens: int,
) -> ChatPrompt:
    """The prompt rendered with as much evidence as fits `context - max_tokens` tokens."""
    budget = context - max_tokens
    kept = list(passages)
    prompt = render(kept)
    while count_tokens(prompt) > budget and len(kept) > 1:
        kept.pop()
        prompt = render(kept)
    if count_tokens(prompt) > budget and kept:
        words = kept[0].passage.text.split()
        low, high = 0, len(words)
        while low < high:  # the most words that still fit
            mid = (low + high + 1) // 2
            cut = replace(kept[0], passage=replace(kept[0].passage, text=" ".join(words[:mid])))
            if count_tokens(render([cut])) <= budget:
                low = mid
            else:
                high = mid - 1
        kept = [replace(kept[0], passage=replace(kept[0].passage, text=" ".join(words[:low])))]
        prompt = render(kept)
        dropped = len(passages)
    else:
        dropped = len(passages) - len(kept)
    if count_tokens(prompt) > budget:
        raise UserError(
            f"the prompt needs {count_tokens(prompt)} tokens without evidence, the context "
            f"leaves {budget} (context {context} - max_tokens {max_tokens})"
        )
    return replace(prompt, truncated_passages=dropped)
