"""The CPU install's torchvision (a CUDA build next to CPU torch) imports through
`ragvqa.torchvision_ops`, in every process, and nothing else changes (docs/install.md)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from ragvqa import torchvision_ops

RESIZE = (
    "import torch\n"
    "from torchvision.transforms.v2 import functional as F\n"
    "print(tuple(F.resize(torch.rand(3, 40, 60), [20, 30]).shape))\n"
)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd="/",  # not the checkout: the installed distribution's entry points are read
        timeout=120,
    )


def test_the_cpu_install_keeps_torchvision_and_its_compiled_ops_do_not_load():
    # what the hook is for: if either fails, the install changed and docs/install.md is stale
    assert importlib.util.find_spec("torchvision") is not None, "README install keeps torchvision"
    import torch

    assert torch.version.cuda is None
    with pytest.raises(OSError):
        torch.ops.load_library(str(torchvision_ops.compiled_library()))


def test_any_process_imports_torchvision_through_torchs_entry_point():
    """No ragvqa import: `import torch` runs ragvqa's `torch.backends` entry point, which is how
    vLLM's subprocesses get it; the transforms work, the missing kernels stay missing."""
    done = _python(
        RESIZE + "import torchvision.ops\n"
        "try:\n"
        "    torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5)\n"
        "except RuntimeError as exc:\n"
        "    print(str(exc).splitlines()[0][:40])\n"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["(3, 20, 30)", "Couldn't load custom C++ ops. This can h"]


def test_without_torchs_autoload_importing_ragvqa_first_is_enough():
    off = {"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"}
    bare = _python("import torchvision", **off)
    assert bare.returncode != 0 and "operator torchvision::nms does not exist" in bare.stderr
    hooked = _python("import ragvqa\n" + RESIZE, **off)
    assert hooked.returncode == 0 and hooked.stdout.strip() == "(3, 20, 30)", hooked.stderr


def test_nothing_is_declared_on_a_cuda_torch_or_without_torchvision(monkeypatch):
    import torch

    monkeypatch.setattr(torchvision_ops, "_library", None)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    assert torchvision_ops.declare_missing_ops() is False
    assert torchvision_ops._library is None
    monkeypatch.setattr(torch.version, "cuda", None)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "torchvision" else real(n, *a)
    )
    assert torchvision_ops.declare_missing_ops() is False
    assert torchvision_ops._library is None


def test_the_hook_is_installed_once_and_leaves_after_firing(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(torchvision_ops, "_library", None)
    calls = []
    monkeypatch.setattr(torchvision_ops, "declare_missing_ops", lambda: calls.append(1))
    torchvision_ops.uninstall()
    torchvision_ops.install()
    torchvision_ops.install()
    hooks = [f for f in sys.meta_path if isinstance(f, torchvision_ops._BeforeTorchvision)]
    assert len(hooks) == 1 and sys.meta_path[0] is hooks[0]
    assert hooks[0].find_spec("PIL") is None and calls == []  # other imports pass by
    assert hooks[0].find_spec("torchvision") is None and calls == [1]
    assert not any(isinstance(f, torchvision_ops._BeforeTorchvision) for f in sys.meta_path)
