"""Old path of `ragvqa.fetch.catalogue`, kept so that existing imports still work."""

from ragvqa.fetch.catalogue import (
    BUILDS,
    FIELDS,
    KINDS,
    NAME,
    ONLY_FOR,
    PART_FIELDS,
    PIN,
    REQUIRED,
    Artefact,
    Catalogue,
    Wheel,
    benchmark_data,
    default_path,
    human_size,
    load_catalogue,
    unknown_name_message,
)

__all__ = [
    "Artefact",
    "benchmark_data",
    "BUILDS",
    "Catalogue",
    "default_path",
    "FIELDS",
    "human_size",
    "KINDS",
    "load_catalogue",
    "NAME",
    "ONLY_FOR",
    "PART_FIELDS",
    "PIN",
    "REQUIRED",
    "unknown_name_message",
    "Wheel",
]
