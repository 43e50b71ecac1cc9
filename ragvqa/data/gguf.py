"""Old path of `ragvqa.fetch.gguf`, kept so that existing imports still work."""

from ragvqa.fetch.gguf import (
    BUILD_FILE,
    PROBE,
    fix_hf_folder,
    gguf_to_hf,
    read_record,
    write_record,
)

__all__ = [
    "BUILD_FILE",
    "fix_hf_folder",
    "gguf_to_hf",
    "PROBE",
    "read_record",
    "write_record",
]
