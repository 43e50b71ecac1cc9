"""The typed schema of pipeline files: every section, every component type's arguments.

`validate_pipeline(config, origins=..., name=...)` checks a resolved pipeline mapping (strict
types, no unknown keys, bounds) and raises a one-line `UserError` naming the file, the line,
the dotted key and what it takes. `Pipeline.load` calls it before anything is built.
`python -m ragvqa.schema --markdown` writes docs/pipeline-reference.md from the same schema.
"""

from __future__ import annotations

from ragvqa.schema.sections import RETRIEVAL_MODES, PipelineConfig
from ragvqa.schema.validate import validate_pipeline

__all__ = ["RETRIEVAL_MODES", "PipelineConfig", "validate_pipeline"]
