"""Old path of `ragvqa.readers.vllm_backend`, kept so that existing imports still work."""

from ragvqa.readers.vllm_backend import (
    ENTRY_POINTS,
    ERROR_LINE,
    GENERIC,
    GUARD_FIX,
    LOG_VAR,
    PR_SET_PDEATHSIG,
    SHUTDOWN_S,
    VLLMGenerator,
    VLLMReader,
    engine_failure,
    log_root_cause,
)
from ragvqa.readers.vllm_backend import _engine_without_main as _engine_without_main

__all__ = [
    "engine_failure",
    "ENTRY_POINTS",
    "ERROR_LINE",
    "GENERIC",
    "GUARD_FIX",
    "log_root_cause",
    "LOG_VAR",
    "PR_SET_PDEATHSIG",
    "SHUTDOWN_S",
    "VLLMGenerator",
    "VLLMReader",
]
