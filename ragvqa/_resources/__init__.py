"""The resources ragvqa ships, as an installed wheel holds them.

The wheel packs the repository's top-level `prompts/`, `pipelines/` and `benchmarks/` folders as
`ragvqa/_resources/<kind>/` (`[tool.setuptools.package-dir]` in pyproject.toml). In a source
checkout (an editable install) this folder holds only this file: the top-level folders are read
where they are. Read resources through `ragvqa.resources.resource_dir`, never by path.
"""
