"""The registry's lazy targets and "did you mean"; `import ragvqa` and the CLI stay light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ragvqa.errors import UserError
from ragvqa.registry import BENCHMARKS, Registry

HEAVY = ["torch", "transformers", "vllm", "faiss", "datasets", "ray", "numpy"]


def test_registry_resolves_lazily_and_suggests():
    from ragvqa.benchmarks.infoseek import InfoSeek

    assert BENCHMARKS.get("infoseek") is InfoSeek
    assert {"evqa", "infoseek"} <= set(BENCHMARKS.names())
    assert "evqa" in BENCHMARKS
    with pytest.raises(UserError, match="unknown benchmark 'infoseak'.*did you mean 'infoseek'"):
        BENCHMARKS.get("infoseak")


def test_registry_rejects_bad_registrations():
    reg = Registry("thing", {"a": "x.y:z"})
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", "x.y:w")
    with pytest.raises(ValueError, match="module:attr"):
        reg.register("b", "x.y.z")


def test_cli_and_scorers_import_no_heavy_library():
    code = (
        "import sys, json\n"
        "import ragvqa.cli.main, ragvqa.eval.infoseek_scorer, ragvqa.eval.evqa_scorer\n"
        "import ragvqa.data.infoseek, ragvqa.data.evqa, ragvqa.data.m2kr, ragvqa.eval.bem\n"
        "import ragvqa.models, ragvqa.models.config, ragvqa.cli.train\n"
        # `ragvqa score NAME` loads the plug-in (its loader and scorer) and nothing heavier
        "import ragvqa.benchmarks.infoseek, ragvqa.benchmarks.evqa, ragvqa.benchmarks.wn_wiki\n"
        "import ragvqa.benchmarks.files\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_console_script_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "ragvqa.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "score" in out.stdout
