"""What ragvqa and the heavy libraries print on stderr: one setting for the CLI and the Python
API, ragvqa's one-line notes (`note`) and the escaping of user text for a terminal (`plain`).

vLLM's and transformers' logs, torch's C++ warnings and Python warnings are hidden unless asked
for: `ragvqa -v` (warnings) or `-vv` (information) on the command line, `set_verbosity(1)` or
`set_verbosity(2)` from Python before a pipeline starts its reader. They are set through the
environment, so that the engine processes vLLM starts inherit them; a variable the user set
before ragvqa was imported stays as it is (`VLLM_LOGGING_LEVEL=INFO python script.py` shows
vLLM's information). The CLI chooses the level for every command; a `Pipeline` used from
Python applies the quiet level (0) when it starts its engine, unless `set_verbosity` chose one.

Quiet, the library only hides warnings raised in those libraries (`QUIET_MODULES`), not the
calling program's; the CLI hides every Python warning.

`note` is the one way a library part (not a CLI command, which has `ragvqa.cli.common.say`)
writes a line for the user beside stdout's results: `ragvqa: <message>` on stderr, flushed, so
it shows at once and never mixes into `answer --json`. `plain` writes user-provided text's
control characters as escapes, so a file cannot recolour, clear or rewrite the user's terminal;
the CLI's `shown()` and `say()` use it, and so does any plain `print` of such text.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Any

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


# C0 and C1 controls, DEL, line and paragraph separators, bidirectional overrides and isolates
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def plain(value: Any) -> str:
    """`value` as text for a terminal: control characters written as escapes (`\\n`,
    `\\x1b`, `\\u202e`), everything else as it is."""
    return _CONTROL.sub(_escape_char, str(value))


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def note(message: str) -> None:
    """One line for the user on stderr, `ragvqa: <message>`, flushed at once (stdout stays for
    results, e.g. `answer --json`)."""
    print(f"ragvqa: {message}", file=sys.stderr, flush=True)
