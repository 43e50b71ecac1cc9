"""What the heavy libraries print: one setting for the CLI and the Python API.

vLLM's and transformers' logs, torch's C++ warnings and Python warnings are hidden unless asked
for: `ragvqa -v` (warnings) or `-vv` (information) on the command line, `set_verbosity(1)` or
`set_verbosity(2)` from Python before a pipeline starts its reader. They are set through the
environment, so that the engine processes vLLM starts inherit them; a variable the user set
before ragvqa was imported stays as it is (`VLLM_LOGGING_LEVEL=INFO python script.py` shows
vLLM's information). The CLI chooses the level for every command; a `Pipeline` used from
Python applies the quiet level (0) when it starts its engine, unless `set_verbosity` chose one.

Quiet, the library only hides warnings raised in those libraries (`QUIET_MODULES`), not the
calling program's; the CLI hides every Python warning.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

# level per verbosity (quiet, -v, -vv) of each library's variable, read at its import
QUIET = {
    "VLLM_LOGGING_LEVEL": ("ERROR", "WARNING", "INFO"),
    "TRANSFORMERS_VERBOSITY": ("error", "warning", "info"),
    "TORCH_CPP_LOG_LEVEL": ("ERROR", "WARNING", "INFO"),
    "PYTHONWARNINGS": ("ignore", None, None),  # None: Python's own default
}
USER_SET = frozenset(v for v in QUIET if v in os.environ)  # at ragvqa's import
# the libraries whose Python warnings a quiet library run hides
QUIET_MODULES = r"(vllm|transformers|torch|torchvision|huggingface_hub|tokenizers|accelerate)\b"
_chosen: list[int] = []  # the level set_verbosity applied last (empty: none yet)


def set_verbosity(
    verbosity: int, *, user_set: frozenset[str] = USER_SET, all_warnings: bool = True
) -> None:
    """Quiet the heavy libraries (0), or let their warnings (1) or information (2) through.
    Variables in `user_set` are left as the user set them. `all_warnings`: quiet hides every
    Python warning (the CLI), else only the libraries' (`QUIET_MODULES`)."""
    level = min(max(verbosity, 0), 2)
    for var, values in QUIET.items():
        if var in user_set:
            continue
        if values[level] is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = values[level]
    if level == 0 and "PYTHONWARNINGS" not in user_set:
        if all_warnings:
            warnings.filterwarnings("ignore")
        else:
            warnings.filterwarnings("ignore", module=QUIET_MODULES)
    if "VLLM_LOGGING_LEVEL" not in user_set:  # vLLM warns at import, before it reads its level
        logging.getLogger("vllm").setLevel(logging.ERROR if level == 0 else logging.NOTSET)
    if "transformers" in sys.modules and "TRANSFORMERS_VERBOSITY" not in user_set:
        from transformers.utils import logging as hf_logging  # imported already: set it now

        hf_logging.set_verbosity(hf_logging.log_levels[QUIET["TRANSFORMERS_VERBOSITY"][level]])
    _chosen[:] = [level]


def quiet_by_default() -> None:
    """The library's default before a reader starts: quiet, unless `set_verbosity` (the CLI's
    -v, or the user's call) chose a level already."""
    if not _chosen:
        set_verbosity(0, all_warnings=False)


def is_quiet() -> bool:
    """Whether vLLM's logs are hidden (no -v, VLLM_LOGGING_LEVEL unset or ERROR)."""
    return os.environ.get("VLLM_LOGGING_LEVEL", "").upper() in ("ERROR", "CRITICAL")


def quiet_vllm_at_import() -> None:
    """vLLM warns while it is being imported, before it applies VLLM_LOGGING_LEVEL, and its
    engine processes import it afresh: a process that imports ragvqa before vLLM (the CLI, an
    engine process whose entry point is ragvqa's) applies the level chosen in the environment."""
    if is_quiet():
        logging.getLogger("vllm").setLevel(logging.ERROR)
