"""Outputs checked before any work: a command refuses to write over one of its own inputs.

`check_outputs` compares what a command writes with what it reads by identity (device and
inode), so a symlink or a hard link to an input is caught too; `check_output_folder` does the
same for a folder and the files a command writes into it. Both are re-exported by `ragvqa.io`,
where the writers are.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ragvqa.errors import UserError

PathLike = str | Path | None


def check_outputs(outputs: Mapping[str, PathLike], inputs: Mapping[str, PathLike]) -> None:
    """Refuse, before any work, outputs that would replace an input or each other.

    Args:
        outputs: What a command writes, by the name the user knows it by (`--output`,
            `--out/config.yaml`); None for an option not given.
        inputs: What it reads, likewise. Files and folders are compared by identity (device
            and inode), so a symlink or a hard link to an input is caught too.

    Raises:
        UserError: naming the output and the input it is.
    """
    given = [(name, Path(p)) for name, p in inputs.items() if p is not None and os.path.exists(p)]
    wanted = [(name, Path(p)) for name, p in outputs.items() if p is not None]
    for name, out in wanted:
        for other, source in given:
            if _same(out, source):
                kind = "folder" if source.is_dir() else "file"
                raise UserError(
                    f"{name} is the same {kind} as {other}; refusing to overwrite an input",
                    path=str(out),
                )
    for (name, a), (other, b) in itertools.combinations(wanted, 2):
        if _same(a, b):
            raise UserError(f"{name} and {other} are the same file", path=str(a))


def check_output_folder(
    folder: str | Path, names: Iterable[str], inputs: Mapping[str, PathLike], *, option: str
) -> None:
    """A folder a command writes the files `names` into: not a file, not an input folder, and
    none of the files it writes is an input (`check_outputs`)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} is a file, expected a folder", path=str(folder))
    outputs: dict[str, PathLike] = {option: folder}
    outputs |= {f"{option}/{name}": folder / name for name in names}
    check_outputs(outputs, inputs)


def _same(a: Path, b: Path) -> bool:
    """Whether two paths name one file: by identity when both exist, else by resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
