"""Old path of `ragvqa.fetch.catalogue_fields`, kept so that existing imports still work."""

from ragvqa.fetch.catalogue_fields import (
    REPO_TYPES,
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

__all__ = [
    "count",
    "dest",
    "files_sha256",
    "flag",
    "include",
    "optional_str",
    "relative",
    "repo",
    "repo_type",
    "REPO_TYPES",
    "SHA256",
    "sha256_hex",
    "strings",
    "url",
]
