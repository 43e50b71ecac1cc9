"""The data catalogue: every file ragvqa can fetch, with its source, size, checksum and place.

`catalogue.yaml` (shipped with the package) lists artefacts of three kinds:
- `url`: one file over HTTP(S), fetched by `ragvqa.data.fetch.download` (resumable, checksummed);
- `hub`: a Hugging Face hub repository: one `filename`, the files matching `include` globs, or
  the whole snapshot, replicated under `<root>/<dest>`;
- `manual`: too large or behind terms/forms; `instructions` say how to get it by hand.

`dest` is a relative path under the data root (`$RAGVQA_DATA`), the layout the benchmark files in
`benchmarks/*/benchmark.yaml` use. The loader validates every entry and names the first bad one.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from ragvqa.config import read_yaml
from ragvqa.errors import UserError

KINDS = ("url", "hub", "manual")
REPO_TYPES = ("model", "dataset")
NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
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
)
REQUIRED = {
    "url": ("url",),
    "hub": ("repo",),
    "manual": ("instructions",),
}
ONLY_FOR = {
    "url": "url",
    "repo": "hub",
    "repo_type": "hub",
    "filename": "hub",
    "revision": "hub",
    "include": "hub",
    "instructions": "manual",
}


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

    def folder(self, root: str | Path) -> Path:
        """`<root>/<dest>`: the file itself (url, manual) or the folder a hub repo goes into."""
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
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else " (see `ragvqa data list`)"
    return f"unknown data artefact {name!r}{hint}"


def default_path() -> Path:
    """The catalogue shipped inside the package."""
    return Path(str(resources.files("ragvqa.data").joinpath("catalogue.yaml")))


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
    for index, entry in enumerate(entries):
        artefact = _artefact(entry, index, str(source))
        if artefact.name in seen:
            raise UserError(f"duplicate artefact name {artefact.name!r}", path=str(source))
        seen.add(artefact.name)
        artefacts.append(artefact)
    return Catalogue(tuple(artefacts), str(source))


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
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
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
        dest=_dest(entry["dest"], fail),
        license=entry["license"],
        benchmarks=_strings(entry.get("benchmarks"), "benchmarks", fail, required=True),
        size=_count(entry.get("size"), "size", fail),
        size_exact=_flag(entry.get("size_exact", True), fail),
        sha256=_sha256(entry.get("sha256"), fail),
        records=_count(entry.get("records"), "records", fail),
        url=_url(entry.get("url"), fail),
        repo=_repo(entry.get("repo"), fail),
        repo_type=_repo_type(entry.get("repo_type"), fail),
        filename=_optional_str(entry.get("filename"), "filename", fail),
        revision=_optional_str(entry.get("revision"), "revision", fail),
        include=_include(entry, fail),
        instructions=_optional_str(entry.get("instructions"), "instructions", fail),
    )


def _dest(value: str, fail: Any) -> str:
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts or "\\" in value or value.startswith("~"):
        raise fail(f"dest must be a relative path under the data root, not {value!r}")
    return str(pure)


def _strings(value: Any, key: str, fail: Any, *, required: bool = False) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail(f"{key!r} must be a non-empty list of strings")
    return tuple(value)


def _count(value: Any, key: str, fail: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise fail(f"{key!r} must be a whole number of bytes/records or null, not {value!r}")
    return value


def _flag(value: Any, fail: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(f"'size_exact' must be true or false, not {value!r}")
    return value


def _sha256(value: Any, fail: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256.match(value):
        raise fail("'sha256' must be 64 lower-case hex digits or null")
    return value


def _url(value: Any, fail: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise fail(f"'url' must be an http(s) URL, not {value!r}")
    return value


def _repo(value: Any, fail: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.count("/") != 1 or not all(value.split("/")):
        raise fail(f"'repo' must look like org/name, not {value!r}")
    return value


def _repo_type(value: Any, fail: Any) -> str:
    if value is None:
        return "model"
    if value not in REPO_TYPES:
        raise fail(f"'repo_type' must be one of {', '.join(REPO_TYPES)}, not {value!r}")
    return value


def _optional_str(value: Any, key: str, fail: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{key!r} must be a non-empty string")
    return value.strip() if key == "instructions" else value


def _include(entry: dict[str, Any], fail: Any) -> tuple[str, ...]:
    include = _strings(entry.get("include"), "include", fail)
    if include and entry.get("filename"):
        raise fail("give either 'filename' or 'include', not both")
    return include
