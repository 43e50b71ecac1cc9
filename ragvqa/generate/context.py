"""Old path of `ragvqa.readers.context`, kept so that existing imports still work."""

from ragvqa.readers.context import (
    chat_token_counter,
    fit_prompt,
    image_size,
    image_token_counter,
    reader_token_counter,
    template_messages,
)

__all__ = [
    "chat_token_counter",
    "fit_prompt",
    "image_size",
    "image_token_counter",
    "reader_token_counter",
    "template_messages",
]
