"""In-process vLLM: every prompt of a batch goes to one `LLM.chat()` call.

Engine arguments (dtype, max_model_len, tensor_parallel_size, gpu_memory_utilization,
limit_mm_per_prompt, enforce_eager, ...) come from the pipeline YAML unchanged. vLLM starts a
separate engine process: a script that creates this generator needs an
`if __name__ == "__main__":` guard. vLLM is imported only here.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ragvqa.errors import UserError
from ragvqa.generate.base import Sampling, check_layout, openai_messages, plain_text
from ragvqa.types import ChatPrompt, Generation


class VLLMGenerator:
    """A vLLM engine in this process. `layout="plain"` sends each prompt's text as it is
    (`LLM.generate`) for base models without a chat template; "chat" (default) uses
    `LLM.chat` and the model's chat template."""

    backend = "vllm"

    def __init__(self, model: str, *, layout: str = "chat", **engine_args: Any):
        # vLLM logs to stdout by default; ragvqa keeps stdout for data (`answer --json`), so
        # its logs (and its engine process's, which inherits the variables) go to stderr, and
        # only warnings unless the user asks for more (VLLM_LOGGING_LEVEL=INFO)
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("vLLM is not installed: pip install 'ragvqa[gpu]' (or [cpu])") from None
        self.model, self.layout = model, check_layout(layout)
        engine_args.setdefault("trust_remote_code", False)
        try:
            self.llm = LLM(model=model, **engine_args)
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"vLLM cannot load {model!r} ({first})") from None

    def close(self) -> None:
        """Stop the engine process now (instead of at interpreter exit)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def tokenizer(self) -> Any:
        return self.llm.get_tokenizer()

    def generate(self, prompts: list[ChatPrompt], sampling: Sampling) -> list[Generation]:
        from vllm import SamplingParams

        if not prompts:
            return []
        params = SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
            stop=list(sampling.stop) or None,
        )
        started = time.perf_counter()
        if self.layout == "plain":
            texts = [plain_text(p) for p in prompts]
            outputs = self.llm.generate(texts, params, use_tqdm=False)
        else:
            outputs = self.llm.chat([openai_messages(p) for p in prompts], params, use_tqdm=False)
        seconds = (time.perf_counter() - started) / len(prompts)
        return [
            Generation(
                text=out.outputs[0].text,
                model=self.model,
                sampling=sampling.as_dict(),
                prompt_tokens=len(out.prompt_token_ids or ()),
                completion_tokens=len(out.outputs[0].token_ids),
                finish_reason=str(out.outputs[0].finish_reason),
                backend=self.backend,
                seconds=round(seconds, 4),
            )
            for out in outputs
        ]
