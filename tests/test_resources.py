"""Shipped resources: `resource_dir` finds the prompt templates, pipelines and benchmark files in
this checkout, and a wheel built from it packs them (and every package) and reads them from the
installed copy, wherever it is run from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import ragvqa
from ragvqa.prompts import PromptLibrary
from ragvqa.resources import KINDS, resource_dir

REPO = Path(__file__).resolve().parents[1]
KNOWN = {
    "prompts": "answer/evidence_short/v1.j2",
    "pipelines": "default.yaml",
    "benchmarks": "infoseek/benchmark.yaml",
}
NOT_SHIPPED = ("benchmarks/perf/",)  # measuring scripts, run from a checkout


def _files(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize("kind", KINDS)
def test_resource_dir_holds_the_shipped_files(kind):
    folder = resource_dir(kind)
    assert (folder / KNOWN[kind]).is_file()
    if Path(ragvqa.__file__).resolve().parents[1] == REPO:  # a checkout: its live folders
        assert folder == REPO / kind


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown resource kind 'prompt'"):
        resource_dir("prompt")


def test_prompt_library_defaults_to_the_shipped_templates(tmp_path):
    assert PromptLibrary().root == resource_dir("prompts")
    own = tmp_path / "mine"
    shutil.copytree(resource_dir("prompts") / "answer" / "no_retrieval", own / "a" / "no_retrieval")
    body = (own / "a" / "no_retrieval" / "v1.j2").read_text(encoding="utf-8")
    (own / "a" / "no_retrieval" / "v1.j2").write_text(
        body.replace("id: answer/no_retrieval", "id: a/no_retrieval"), encoding="utf-8"
    )
    assert PromptLibrary(own).refs() == ["a/no_retrieval@1"]


def test_every_package_is_listed_in_pyproject():
    """Packages are listed by hand (see pyproject.toml): a new one must be added there."""
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "ragvqa").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"


def _source_copy(dest: Path) -> None:
    """The files a wheel is built from, copied so the build leaves the checkout untouched."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("ragvqa", *KINDS):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)


def test_built_wheel_ships_and_reads_the_resources(tmp_path):
    """~3 s: build the wheel offline, check its files, import it from a folder elsewhere."""
    import setuptools  # the dev extra's, which pyproject's build needs (>= 77)

    assert int(setuptools.__version__.split(".")[0]) >= 77, setuptools.__version__
    src = tmp_path / "src"
    src.mkdir()
    _source_copy(src)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("ragvqa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    assert {n.split("/")[0] for n in names} == {"ragvqa", wheel.name.split("-py")[0] + ".dist-info"}
    code = {f"ragvqa/{n}" for n in _files(REPO / "ragvqa") if n.endswith(".py")}
    assert code - names == set()
    assert "ragvqa/fetch/catalogue.yaml" in names  # package data, read next to its module
    for kind in KINDS:
        shipped = {n for n in _files(REPO / kind) if not f"{kind}/{n}".startswith(NOT_SHIPPED)}
        in_wheel = {
            n.removeprefix(f"ragvqa/_resources/{kind}/")
            for n in names
            if n.startswith(f"ragvqa/_resources/{kind}/")
        }
        assert in_wheel == shipped, kind

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import json, ragvqa; from ragvqa.resources import resource_dir; "
        "from ragvqa.prompts import PromptLibrary; "
        "from ragvqa.fetch.catalogue import load_catalogue; "
        "print(json.dumps([ragvqa.__file__, [str(resource_dir(k)) for k in "
        f"{KINDS!r}], PromptLibrary().refs(), len(load_catalogue().artefacts)]))"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, check=True, capture_output=True
    )
    module, folders, refs, artefacts = json.loads(out.stdout)
    assert artefacts > 0  # the catalogue read from the installed copy
    assert Path(module).is_relative_to(site)
    assert folders == [str(site / "ragvqa" / "_resources" / kind) for kind in KINDS]
    assert refs == PromptLibrary(REPO / "prompts").refs()
