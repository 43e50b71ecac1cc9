"""In-process vLLM: every prompt of a batch goes to one `LLM.chat()` call.

Engine arguments (dtype, max_model_len, tensor_parallel_size, gpu_memory_utilization,
limit_mm_per_prompt, enforce_eager, ...) come from the pipeline YAML unchanged. vLLM starts a
separate engine process: a script that creates this generator needs an
`if __name__ == "__main__":` guard. vLLM is imported only here.

The engine process, and the worker processes it starts (where the model lives), die with the
process that started them, however that one ends (`kill -9` included), instead of staying
behind with the model in memory: on Linux, while `LLM()` starts the engine, vLLM's process entry
points are wrapped so that each process first asks the kernel for SIGKILL when its parent dies
(`prctl(PR_SET_PDEATHSIG)`). The kernel sends it when the *thread* that started the process
ends, so this is done only for an engine started from the main thread, or from a thread that
says it lives as long as the engine (`outlives_engine`, as `ragvqa.startup.Background`'s do);
vLLM starts its workers from the engine process's main thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ragvqa.errors import UserError
from ragvqa.generate.base import Sampling, check_layout, openai_messages, plain_text
from ragvqa.types import ChatPrompt, Generation


class VLLMGenerator:
    """A vLLM engine in this process. `layout="plain"` sends each prompt's text as it is
    (`LLM.generate`) for base models without a chat template; "chat" (default) uses
    `LLM.chat` and the model's chat template."""

    backend = "vllm"

    @staticmethod
    def preload() -> Any:
        """Import vLLM (seconds of imports) and return its `LLM` class. The pipeline calls it
        in its main thread before starting the engine in a background thread
        (`Components.start_generator`), so that vLLM's imports do not interleave with those
        of the main thread (an import of the same package in two threads can deadlock)."""
        # vLLM logs to stdout by default; ragvqa keeps stdout for data (`answer --json`), so
        # its logs (and its engine process's, which inherits the variables) go to stderr, and
        # only warnings unless the user asks for more (VLLM_LOGGING_LEVEL=INFO)
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("vLLM is not installed: pip install 'ragvqa[gpu]' (or [cpu])") from None
        return LLM

    def __init__(self, model: str, *, layout: str = "chat", **engine_args: Any):
        LLM = self.preload()  # noqa: N806 (vLLM's class)
        self.model, self.layout = model, check_layout(layout)
        engine_args.setdefault("trust_remote_code", False)
        # what the prompt's token count needs to know of images (generate/context.py)
        self.mm_kwargs = dict(engine_args.get("mm_processor_kwargs") or {})
        self.image_limit = (engine_args.get("limit_mm_per_prompt") or {}).get("image")
        self._hub = {k: engine_args[k] for k in ("revision", "download_dir") if engine_args.get(k)}
        self._processor: Any = None
        if os.environ["VLLM_LOGGING_LEVEL"].upper() in ("ERROR", "CRITICAL"):  # `ragvqa` (no -v)
            engine_args.setdefault("use_tqdm_on_load", False)  # nor the weights' loading bar
        try:
            with _engine_dies_with_parent():
                self.llm = LLM(model=model, **engine_args)
        except Exception as exc:  # noqa: BLE001 (whatever the type: one line, exit 2)
            raise UserError(f"vLLM cannot load {model!r} ({engine_failure(exc)})") from None

    def close(self) -> None:
        """Stop the engine process now (instead of at interpreter exit)."""
        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()

    def tokenizer(self) -> Any:
        return self.llm.get_tokenizer()

    @property
    def context_length(self) -> int | None:
        """The engine's `max_model_len` (the model's own when the pipeline sets none)."""
        config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        return getattr(config, "max_model_len", None)

    def hf_processor(self) -> Any:
        """The model's Hugging Face processor (what vLLM runs on each image), loaded on first
        use to count image tokens: same files, no remote code."""
        if self._processor is None:
            from transformers import AutoProcessor

            revision = self._hub.get("revision")
            cache_dir = self._hub.get("download_dir")
            self._processor = AutoProcessor.from_pretrained(
                self.model, revision=revision, cache_dir=cache_dir, trust_remote_code=False
            )
        return self._processor

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


def engine_failure(exc: BaseException) -> str:
    """The root cause of a failed engine start, in one line: the innermost exception of the
    chain with a message. vLLM wraps the engine process's failure in "Engine core
    initialization failed. See root cause above" (the cause is in the engine's log, so the line
    says how to see it) and a failed model inspection in a pydantic validation error (whose
    second line is the message)."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 20:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for cause in reversed(chain):
        lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("For further information")]
        if len(lines) > 1 and re.fullmatch(r"\d+ validation errors? for \w+", lines[0]):
            lines = lines[1:]
        if lines:
            text = re.sub(r"\s*\[type=.*$", "", lines[0]).removeprefix("Value error, ")
            if "see root cause" in text.lower():
                text += " (run with -v, or VLLM_LOGGING_LEVEL=INFO, to see the engine's log)"
            return f"{type(cause).__name__}: {text}"
    return type(exc).__name__


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# vLLM's process entry points: its engine process, and the engine's worker processes
ENTRY_POINTS = {
    "engine": ("vllm.v1.engine.core", "EngineCoreProc", "run_engine_core"),
    "worker": ("vllm.v1.executor.multiproc_executor", "WorkerProc", "worker_main"),
}
_originals: dict[str, Callable[..., Any]] = {}  # vLLM's own, while wrapped (a fork inherits it)


@contextlib.contextmanager
def _engine_dies_with_parent() -> Iterator[None]:
    """While vLLM starts its engine process, give that process `_engine_process_main` as its
    entry point (vLLM reads it then; a spawned process finds it by module name). Nothing is
    changed off Linux, in a thread that may end before the engine (any but the main thread or
    one marked `outlives_engine`), or for a vLLM without that entry point."""
    thread = threading.current_thread()
    lasting = thread is threading.main_thread() or getattr(thread, "outlives_engine", False)
    if not (sys.platform.startswith("linux") and lasting):
        yield
        return
    restore = _wrap("engine", _engine_process_main)
    try:
        yield
    finally:
        restore()


def _wrap(kind: str, wrapper: Callable[..., Any]) -> Callable[[], None]:
    """Make `wrapper` the `kind` entry point; returns what undoes it (a no-op where vLLM has
    no such entry point)."""
    module, name, attr = ENTRY_POINTS[kind]
    owner = getattr(_import(module), name, None)
    original = vars(owner).get(attr) if owner is not None else None
    if not isinstance(original, staticmethod):
        return lambda: None
    _originals[kind] = original.__func__
    setattr(owner, attr, staticmethod(wrapper))

    def restore() -> None:
        setattr(owner, attr, original)
        _originals.pop(kind, None)

    return restore


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:  # another vLLM layout: its processes are left as they are
        return None


def _original(kind: str) -> Callable[..., Any]:
    """vLLM's own entry point: kept in a forked process, unwrapped in a spawned one."""
    if kind in _originals:
        return _originals[kind]
    module, name, attr = ENTRY_POINTS[kind]
    return getattr(getattr(_import(module), name), attr)


def _engine_process_main(*args: Any, **kwargs: Any) -> Any:
    """The engine process: dies with its parent, and so do the workers it starts."""
    _die_with_parent()
    _wrap("worker", _worker_process_main)  # for good: this process is vLLM's
    return _original("engine")(*args, **kwargs)


def _worker_process_main(*args: Any, **kwargs: Any) -> Any:
    """An engine's worker process (the model lives here): dies with the engine."""
    _die_with_parent()
    return _original("worker")(*args, **kwargs)


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent dies; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before the request was made
