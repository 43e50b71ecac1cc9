"""In-process vLLM: every prompt of a batch goes to one `LLM.chat()` call.

Engine arguments (dtype, max_model_len, tensor_parallel_size, gpu_memory_utilization,
limit_mm_per_prompt, enforce_eager, ...) come from the pipeline YAML unchanged. vLLM starts a
separate engine process by spawn, which would re-run the main script (or fail on a script read
from stdin): while it starts, ragvqa leaves the main module out of what the new process
prepares (`_engine_without_main`), so a script needs no `if __name__ == "__main__":` guard.
vLLM is imported only here.

Quiet (no `-v`, `ragvqa.logs`), the engine process writes its output to a log file instead of
the terminal (`RAGVQA_ENGINE_LOG`, read by `_engine_process_main`): a failed start is one line
with the root cause found in that log and the log's path (`engine_failure`). Engines still open
at interpreter exit are closed then (`atexit`), so that vLLM has nothing to force-kill and no
shared memory leaks.

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

import atexit
import contextlib
import ctypes
import importlib
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ragvqa import logs
from ragvqa.errors import UserError
from ragvqa.readers.base import Sampling, check_layout, openai_messages, plain_text
from ragvqa.schema.components import VLLMArgs
from ragvqa.types import ChatPrompt, Generation

SHUTDOWN_S = 30.0  # the longest `close()` waits for the engine to stop before killing it
LOG_VAR = "RAGVQA_ENGINE_LOG"  # where a starting engine process writes its stdout and stderr
GUARD_FIX = (
    'put the code that starts it under `if __name__ == "__main__":` (vLLM starts its engine '
    "by spawn, which re-runs the main script)"
)
_open: weakref.WeakSet[VLLMReader] = weakref.WeakSet()  # closed at exit when still open
logs.quiet_vllm_at_import()  # an engine process imports this module before vLLM


class VLLMReader:
    """A vLLM engine in this process. `layout="plain"` sends each prompt's text as it is
    (`LLM.generate`) for base models without a chat template; "chat" (default) uses
    `LLM.chat` and the model's chat template."""

    args = VLLMArgs  # its arguments' schema (ragvqa.registry)

    backend = "vllm"

    @staticmethod
    def preload() -> Any:
        """Import vLLM (seconds of imports) and return its `LLM` class. The pipeline calls it
        in its main thread before starting the engine in a background thread
        (`Components.start_reader`), so that vLLM's imports do not interleave with those
        of the main thread (an import of the same package in two threads can deadlock)."""
        # vLLM logs to stdout by default; ragvqa keeps stdout for data (`answer --json`), so
        # its logs (and its engine process's, which inherits the variables) go to stderr, and
        # none unless the user asks for more (`ragvqa -v`, VLLM_LOGGING_LEVEL=INFO)
        logs.quiet_by_default()
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
        self.log: Path | None = None  # the engine's output, when quiet
        if logs.is_quiet():  # `ragvqa` (no -v)
            engine_args.setdefault("use_tqdm_on_load", False)  # nor the weights' loading bar
            fd, name = tempfile.mkstemp(prefix="ragvqa-engine-", suffix=".log")
            os.close(fd)
            self.log = Path(name)
        try:
            with _engine_dies_with_parent(), _engine_without_main(), _engine_log(self.log):
                self.llm = LLM(model=model, **engine_args)
        except Exception as exc:  # noqa: BLE001 (whatever the type: one line, exit 2)
            why = engine_failure(exc, self.log)
            if self.log is not None and str(self.log) not in why:  # a log nobody will read
                self.log.unlink(missing_ok=True)
            if _bootstrapping(exc):
                raise UserError(f"vLLM cannot start its engine here: {GUARD_FIX}") from None
            raise UserError(f"vLLM cannot load {model!r} ({why})") from None
        _open.add(self)
        # at exit, before vLLM's own finalizers (registered while it started: atexit runs the
        # last registered first), which give the engine 5 s and then kill it
        atexit.unregister(_close_open_engines)
        atexit.register(_close_open_engines)

    def close(self) -> None:
        """Stop the engine process now (instead of at interpreter exit); a second call does
        nothing. The engine's log file (quiet runs) goes with it."""
        _open.discard(self)
        core = getattr(getattr(self, "llm", None), "llm_engine", None)
        core = getattr(core, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:  # time to stop on its own (vLLM's default, 5 s, ends in a kill on a busy CPU)
                core.shutdown(timeout=SHUTDOWN_S)
            except TypeError:  # a vLLM whose shutdown takes no timeout
                core.shutdown()
        if self.log is not None:
            self.log.unlink(missing_ok=True)

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


def _close_open_engines() -> None:
    """Close the engines a program left open (no `close()`, no `with`) before the interpreter
    tears down what vLLM's own shutdown needs: without it vLLM force-kills its engine process
    and multiprocessing reports leaked shared memory."""
    for generator in list(_open):
        with contextlib.suppress(Exception):
            generator.close()


VLLMGenerator = VLLMReader  # the name before issue 24, kept for existing code
# vLLM's wrappers of an engine process's failure: the cause is further up in its log
GENERIC = re.compile(r"(initialization failed|see root cause|failed to start)", re.IGNORECASE)
ERROR_LINE = re.compile(r"(?:^|\s)((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception)): (\S.*)$")


def log_root_cause(log: Path | None) -> str | None:
    """The first `XxxError: message` line of an engine log that is not one of vLLM's generic
    wrappers ("Engine core initialization failed", "WorkerProc initialization failed")."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace") if log else ""
    except OSError:
        return None
    for line in text.splitlines():
        found = ERROR_LINE.search(line.strip())
        if found and not GENERIC.search(found.group(2)):
            return f"{found.group(1).rsplit('.', 1)[-1]}: {found.group(2).strip()}"
    return None


def engine_failure(exc: BaseException, log: Path | None = None) -> str:
    """The root cause of a failed engine start, in one line: the innermost exception of the chain
    with a message. vLLM wraps the engine process's failure in "Engine core initialization failed.
    See root cause above": the cause is then read from the engine's `log` (quiet runs) and the line
    names the log; without one, the line says how to see it. A failed model inspection is a pydantic
    validation error (whose second line is the message)."""
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
                root = log_root_cause(log)
                if root is not None:
                    return f"{root}; engine log: {log}"
                if log is not None and log.is_file() and log.stat().st_size:
                    return f"{type(cause).__name__}: {text} (engine log: {log})"
                text += " (run with -v, or VLLM_LOGGING_LEVEL=INFO, to see the engine's log)"
            return f"{type(cause).__name__}: {text}"
    return type(exc).__name__


def _bootstrapping(exc: BaseException) -> bool:
    """Whether `exc` is multiprocessing's refusal to start a process from a main module that
    a spawned child is importing (a script without a `__main__` guard that another library
    started by spawn: vLLM's engine no longer imports the main module)."""
    cause: BaseException | None = exc
    for _ in range(20):
        if cause is None:
            return False
        if "bootstrapping phase" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


_local = threading.local()
_prepare: list[Callable[..., Any]] = []  # multiprocessing's own get_preparation_data, once wrapped


@contextlib.contextmanager
def _engine_without_main() -> Iterator[None]:
    """While this thread starts vLLM's engine, a process it spawns does not import the main
    module (the user's script, run again without its `__main__` guard, or stdin, which has no
    file): the engine's entry point and arguments are found by module name."""
    import multiprocessing.spawn as spawn

    if not _prepare:
        _prepare.append(spawn.get_preparation_data)

        def prepare(name: str) -> dict[str, Any]:
            data = _prepare[0](name)
            if getattr(_local, "starting", False):
                data.pop("init_main_from_path", None)
                data.pop("init_main_from_name", None)
            return data

        spawn.get_preparation_data = prepare
    _local.starting = True
    try:
        yield
    finally:
        _local.starting = False


@contextlib.contextmanager
def _engine_log(log: Path | None) -> Iterator[None]:
    """While the engine starts, its processes write their output to `log` (None: the
    terminal): they read the variable when they start (`_engine_process_main`)."""
    if log is None:
        yield
        return
    os.environ[LOG_VAR] = str(log)
    try:
        yield
    finally:
        os.environ.pop(LOG_VAR, None)


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
    """The engine process: dies with its parent, and so do the workers it starts; writes its
    output to the engine log when the parent is quiet (`RAGVQA_ENGINE_LOG`)."""
    _die_with_parent()
    _to_log(os.environ.pop(LOG_VAR, None))
    _wrap("worker", _worker_process_main)  # for good: this process is vLLM's
    return _original("engine")(*args, **kwargs)


def _worker_process_main(*args: Any, **kwargs: Any) -> Any:
    """An engine's worker process (the model lives here): dies with the engine."""
    _die_with_parent()
    return _original("worker")(*args, **kwargs)


def _to_log(log: str | None) -> None:
    """Send this process's stdout and stderr (and its children's) to the file `log`."""
    if not log:
        return
    with contextlib.suppress(OSError):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent dies; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before the request was made
