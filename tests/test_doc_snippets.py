"""Every Python example in README.md and docs/*.md runs as written, saved as a script.

Each ```python block is either run or says why not in its first line (`# not run: REASON`, for
examples that need the network or a GPU). Every block is checked by pyflakes (ruff's F rules:
undefined names such as a `queries` nobody defined, unused imports). The runnable ones run in
one Python process, from a folder where `ragvqa-demo` is the demo world (the session `world`),
as `__main__` scripts one after the other (`runpy.run_path`); that process is itself a script
without a `__main__` guard, so if starting vLLM's engine re-ran the main script the run would
fail. To start one engine for all of them, the process starts the demo world's reader first
and shares the first `VLLMGenerator` of each model and settings between the examples, closing
none of them: the engine left open
must be closed at exit quietly (`atexit`), with nothing on stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ragvqa import logs

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"# not run: \S.{8,}")
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def snippets() -> list[tuple[str, str]]:
    """(file:line, code) of every ```python block."""
    found = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return found


def runnable() -> list[tuple[str, str]]:
    return [(where, code) for where, code in snippets() if not code.startswith("# not run:")]


def test_every_example_is_run_or_says_why_and_names_only_what_it_defines():
    found = snippets()
    assert len(found) >= 9 and len(runnable()) >= 5, [w for w, _ in found]
    for where, code in found:
        first = code.splitlines()[0]
        if first.startswith("# not run"):
            assert NOT_RUN.fullmatch(first), f"{where}: `# not run: REASON` with a reason"
        assert "# not run" not in code.split("\n", 1)[1], f"{where}: the marker is the 1st line"
        compile(code, where, "exec")
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F",
             "--output-format", "concise", "--stdin-filename", "example.py", "-"],
            input=code, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert lint.returncode == 0, f"{where}:\n{lint.stdout}{lint.stderr}"


DRIVER = """\
import runpy
import sys

from ragvqa import Pipeline
from ragvqa.generate import vllm_backend

engines = {}
start = vllm_backend.VLLMGenerator.__init__


def shared(self, model, **engine_args):  # one engine per model and settings, for every example
    key = (model, repr(sorted(engine_args.items())))
    if key not in engines:
        first = object.__new__(vllm_backend.VLLMGenerator)
        start(first, model, **engine_args)
        engines[key] = first
    self.__dict__ = engines[key].__dict__


vllm_backend.VLLMGenerator.__init__ = shared
vllm_backend.VLLMGenerator.close = lambda self: None  # the engine stays for the next example
# started here, in the main thread: an engine started by a pipeline's background thread dies
# with that thread, when its pipeline closes
Pipeline.load("ragvqa-demo/pipeline.yaml").generator
for path in sys.argv[1:]:
    print(f"=== {path}", flush=True)
    runpy.run_path(path, run_name="__main__")
print(f"=== engines: {len(engines)}", flush=True)
del vllm_backend.VLLMGenerator.close  # left open: closed at exit
"""


@pytest.mark.engine  # the examples start the demo world's reader
def test_the_examples_run_as_scripts(world, tmp_path):
    (tmp_path / "ragvqa-demo").symlink_to(world["root"])
    paths = []
    for i, (where, code) in enumerate(runnable()):
        path = tmp_path / f"example_{i}.py"
        path.write_text(f"# {where}\n{code}", encoding="utf-8")
        paths.append(path.name)
    (tmp_path / "driver.py").write_text(DRIVER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in logs.QUIET}  # the library's default
    done = subprocess.run(
        [sys.executable, "driver.py", *paths],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=400,
    )  # fmt: skip
    report = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-6000:]}"
    assert done.returncode == 0, report
    outputs = dict(part.split("\n", 1) for part in done.stdout.split("=== ")[1:] if "\n" in part)
    assert set(paths) <= set(outputs) and "engines: 1" in done.stdout, report
    for i, (where, _) in enumerate(runnable()):
        assert outputs[f"example_{i}.py"].strip(), f"{where} printed nothing\n{report}"
    assert "'generate': True" in done.stdout, report  # the second call read cache and journal
    # quiet: nothing from vLLM, transformers or torch, at start, run or exit
    assert done.stderr.strip() == "", report
    print(textwrap.indent(done.stdout, "  "))
