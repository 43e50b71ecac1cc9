"""The pipeline schema: every shipped pipeline validates; unknown keys, wrong types, values out
of range and `trust_remote_code` from a file are one line naming the file, the line and the
dotted key, exit 2, before any model loads; docs/pipeline-reference.md matches the schema."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import textwrap
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
from pydantic_core import PydanticUndefined

from ragvqa.config import load_located
from ragvqa.errors import UserError
from ragvqa.fixtures.world import PIPELINE as WORLD_PIPELINE
from ragvqa.pipeline import Pipeline
from ragvqa.registry import GENERATORS, READERS, RERANKERS, Registry
from ragvqa.resources import resource_dir
from ragvqa.schema import validate_pipeline
from ragvqa.schema.components import component_args
from ragvqa.schema.markdown import COMMAND, markdown
from ragvqa.schema.validate import Checker, check_component

REPO = Path(__file__).resolve().parents[1]
PIPELINES = resource_dir("pipelines")
# a valid pipeline whose models do not exist: anything past validation would fail on them
GOOD = """\
name: t
encoder:
  model: /nonexistent/encoder
kb:
  path: /nonexistent/kb
index:
  path: /nonexistent/index
retrieval:
  top_k: 5
  one_per_page: true
reader:
  generator:
    type: vllm
    model: /nonexistent/reader
  prompt: answer/evidence_short@1
  batch_size: 8
"""


def check(text: str, overrides: list[str] = (), tmp_path: Path | None = None, **kw) -> Path:
    """Write `text` to p.yaml and validate it (raises the UserError a bad file gives)."""
    path = tmp_path / "p.yaml"
    path.write_text(text)
    config, origins = load_located(path, list(overrides))
    validate_pipeline(config, origins=origins, name=str(path), **kw)
    return path


def ragvqa(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (no network, its own cache)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGVQA_CACHE": str(cwd / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "ragvqa.cli", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(p.name for p in PIPELINES.glob("*.yaml")))
def test_every_shipped_pipeline_validates(name):
    config, origins = load_located(PIPELINES / name)
    typed = validate_pipeline(config, origins=origins, name=name)
    assert typed.reader.generator["type"] == "vllm"


def test_the_demo_world_and_the_tests_overrides_validate(tmp_path):
    """The demo world's pipeline, with every override the test suite and the docs use."""
    for overrides in (
        [],
        ["reader.batch_size=8", "retrieval.top_k=3", "reader.passages=3"],
        ["rerank.type=ret_sections", "rerank.top_entities=3", "rerank.alpha=0.3"],
        ["rerank.type=entity_choice", "rerank.max_candidates=3"],
        ["rerank.type=cross_encoder", "rerank.model=BAAI/bge-reranker-v2-m3", "rerank.alpha=0.5"],
        [f"index.faiss.{s}" for s in ("kind=ivfpq", "nlist=2", "m=8", "nbits=4", "refine=80")],
        ["reader.context=512", "reader.images=true", "encoder.model="],
        ["retrieval.mode=none", "reader.prompt=answer/no_retrieval@1"],
        ["retrieval.mode=oracle", "reader.generator.layout=plain"],
        ["kb.source.format=evqa", "kb.source.input=kb.json", "kb.source.images_dir=kb_images"],
        ["reader.generator.limit_mm_per_prompt=null", "reader.sampling.stop=['\\n']"],
        ["reader.generator={type: openai, base_url: 'http://127.0.0.1:9/v1', model: m}"],
        ["reader.generator.engine_args={swap_space: 4}"],
    ):
        check(WORLD_PIPELINE, overrides, tmp_path)


@pytest.mark.parametrize(
    ("text", "args", "line", "key", "expected"),
    [
        ("retrieval:\n  top_kk: 3\n", [], 3, "retrieval.top_kk",
         "unknown key; did you mean 'top_k'?"),
        ("", ["--set", "retrieval.topk=3"], None, "retrieval.topk (from --set retrieval.topk=3)",
         "unknown key; did you mean 'top_k'? (known: top_k, one_per_page, mode)"),
        # an unknown section made by --set is the override's, not the file's line 2
        ("", ["--set", "retrival.top_k=3"], None, "retrival (from --set retrival.top_k=3)",
         "unknown pipeline section; did you mean 'retrieval'?"),
        ("retrieval:\n  one_per_page: 'no'\n", [], 3, "retrieval.one_per_page",
         "expected true or false, got the string 'no'"),
        ("reader:\n  images: 'false'\n", [], 3, "reader.images",
         "expected true or false, got the string 'false'"),
        ("retrieval:\n  top_k: five\n", [], 3, "retrieval.top_k",
         "expected integer >= 1, got the string 'five'"),
        ("retrieval:\n  top_k: 0\n", [], 3, "retrieval.top_k", "expected integer >= 1, got 0"),
        ("reader: []\n", [], 2, "reader", "expected null or mapping, got a list"),
        ("reader:\n  batch_size: 0\n", [], 3, "reader.batch_size",
         "expected integer >= 1, got 0"),
        ("reader:\n  generator:\n    type: vlm\n", [], 4, "reader.generator.type",
         "unknown generator 'vlm' (known: openai, transformers, vllm); did you mean 'vllm'?"),
        ("rerank:\n  type: cross_encoder\n  model: m\n  alpa: 0.5\n", [], 5, "rerank.alpa",
         "unknown key; did you mean 'alpha'?"),
        ("reader:\n  generator:\n    trust_remote_code: true\n", [], 4,
         "reader.generator.trust_remote_code", "pass --trust-remote-code on the command line"),
    ],
)  # fmt: skip
def test_bad_pipelines_fail_in_one_line_through_the_cli(tmp_path, text, args, line, key, expected):
    """`ragvqa answer` refuses the file at validation: exit 2, one line naming the file, the
    key's line, the dotted key and what it takes; the models (which do not exist) never load."""
    (tmp_path / "good.yaml").write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: good.yaml\n" + text)
    proc = ragvqa(
        "answer", "--question", "Which city?", "--pipeline", str(bad), *args, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    where = f"{bad}:{line}" if line else str(bad)
    assert proc.stderr.startswith(f"error: {where}: {key}: {expected}"), proc.stderr


def test_the_flag_lets_a_file_set_trust_remote_code_and_sets_it(tmp_path):
    """With --trust-remote-code the same file passes validation (and stops later, at its
    unknown template, before any model loads); `bench` has the flag too."""
    (tmp_path / "good.yaml").write_text(GOOD)
    remote = tmp_path / "remote.yaml"
    remote.write_text(
        "base: good.yaml\nretrieval:\n  mode: none\nreader:\n  prompt: answer/nope@1\n"
        "  generator:\n    trust_remote_code: true\n"
    )
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "1", "question": "Which city?", "entity": "Paris"}\n')
    for command in (
        ["answer", "--question", "Which city?"],
        ["bench", "wn-wiki", "--questions", str(questions), "--out", str(tmp_path / "run")],
    ):
        refused = ragvqa(*command, "--pipeline", str(remote), cwd=tmp_path)
        assert refused.returncode == 2 and "pass --trust-remote-code" in refused.stderr
        allowed = ragvqa(*command, "--pipeline", str(remote), "--trust-remote-code", cwd=tmp_path)
        assert allowed.returncode == 2, allowed.stderr
        assert "unknown prompt template 'answer/nope@1'" in allowed.stderr
        assert allowed.stderr.count("\n") == 1
    # the flag turns it on for a vLLM reader; a file without it gets it from the flag alone
    good = tmp_path / "good.yaml"
    assert Pipeline.load(remote, trust_remote_code=True).section("reader")["generator"][
        "trust_remote_code"
    ]
    assert Pipeline.load(good, trust_remote_code=True).section("reader")["generator"][
        "trust_remote_code"
    ]
    assert "trust_remote_code" not in Pipeline.load(good).section("reader")["generator"]
    # readers that run no repository code are left as they are
    http = ["reader.generator={type: openai, base_url: 'http://127.0.0.1:9/v1', model: m}"]
    generator = Pipeline.load(good, http, trust_remote_code=True).section("reader")["generator"]
    assert "trust_remote_code" not in generator
    # nor can vLLM's pass-through arguments turn it on
    with pytest.raises(UserError, match=r"engine_args.trust_remote_code .*: set reader.genera"):
        Pipeline.load(good, ["reader.generator.engine_args={trust_remote_code: true}"])


def test_errors_name_the_file_and_line_that_set_the_key(tmp_path):
    """A bad key set in a base file is reported against the base file and its line; a missing
    key in a mapping an override made names the override."""
    (tmp_path / "good.yaml").write_text(GOOD.replace("  top_k: 5\n", "  top_k: -1\n"))
    (tmp_path / "child.yaml").write_text("base: good.yaml\nname: child\n")
    with pytest.raises(UserError) as err:
        Pipeline.load(tmp_path / "child.yaml")
    assert str(err.value) == (
        f"{(tmp_path / 'good.yaml').resolve()}:9: retrieval.top_k: expected integer >= 1, got -1"
    )
    with pytest.raises(UserError) as err:
        check(GOOD, ["rerank.alpha=0.5"], tmp_path)
    assert str(err.value).endswith(
        "rerank.type: missing (expected one of cross_encoder, entity_choice, ret_sections) "
        "(after --set rerank.alpha=0.5)"
    )
    with pytest.raises(UserError, match=r"p.yaml: kb.source.input \(from --set kb.source="):
        check(GOOD, ["kb.source={format: evqa, input: 3}"], tmp_path)
    with pytest.raises(UserError, match=r"retrieval.mode .*got the string 'indx'; did you mean"):
        check(GOOD, ["retrieval.mode=indx"], tmp_path)
    with pytest.raises(UserError, match=r"reader.sampling.stop\[1\] .*got 1"):
        check(GOOD, ["reader.sampling.stop=[a, 1]"], tmp_path)
    with pytest.raises(UserError, match=r"retrival: unknown pipeline section; did you mean"):
        check(GOOD + "retrival: {}\n", (), tmp_path)
    with pytest.raises(UserError, match=r"p.yaml:12: reader.generator.model: missing"):
        check(GOOD.replace("    model: /nonexistent/reader\n", ""), (), tmp_path)
    with pytest.raises(UserError, match=r"encoder.dtype .*did you mean 'bfloat16'"):
        check(GOOD, ["encoder.dtype=bf16"], tmp_path)
    with pytest.raises(UserError, match=r"gpu_memory_utilization .*expected null or number > 0"):
        check(GOOD, ["reader.generator.gpu_memory_utilization=1.5"], tmp_path)
    with pytest.raises(UserError, match=r"\(2 more problem\(s\) after this one\)"):
        check(GOOD, ["retrieval={top_k: 0, one_per_page: 1, mode: x}"], tmp_path)


class PluginReranker:
    """A reranker a plug-in could register (no schema of its own)."""

    def __init__(self, encoder: object, *, alpha: float = 0.5, depth: int = 3):
        self.encoder, self.alpha, self.depth = encoder, alpha, depth


def test_a_plugin_component_is_checked_against_its_signature():
    """A registered type without a schema: its constructor's parameters are the schema."""
    registry = Registry("reranker", {"mine": f"{__name__}:PluginReranker"})
    checker = Checker(None, "p.yaml")
    spec = {"type": "mine", "alpha": 0.2, "depth": 2}
    assert check_component(checker, registry, spec, ("rerank",)) is None
    with pytest.raises(UserError) as err:
        check_component(checker, registry, {**spec, "dept": 3}, ("rerank",))
    assert str(err.value) == (
        "p.yaml: rerank.dept: unknown argument; did you mean 'depth'? "
        "(known: encoder, alpha, depth)"
    )


def test_schema_defaults_are_the_defaults_the_code_applies():
    """Each schema names exactly the settings of the dataclass it feeds, and the dataclass
    takes its defaults from the schema: none is written twice (no literal default in them)."""
    from ragvqa.generate.base import Sampling
    from ragvqa.index.build import IndexParams
    from ragvqa.index.faiss_index import FaissParams
    from ragvqa.kb.build import BuildParams
    from ragvqa.reader_settings import ReaderSettings
    from ragvqa.schema.sections import (
        EncoderSection,
        FaissSection,
        KBSource,
        ReaderSection,
        SamplingSection,
    )

    for schema, target in (
        (SamplingSection, Sampling),
        (FaissSection, FaissParams),
        (KBSource, BuildParams),
        (ReaderSection, ReaderSettings),
    ):
        names = {f.name: f.default for f in fields(target)}  # MISSING: required
        assert set(schema.model_fields) - {"generator"} == set(names), schema
        for name, default in names.items():
            declared = schema.model_fields[name].default
            if default is not MISSING:
                assert default == (tuple(declared) if name == "stop" else declared), name
            else:  # required here: required in the schema too, or the section's value is used
                assert declared is PydanticUndefined or target is ReaderSettings, name
        assert not _literal_defaults(target), (target, _literal_defaults(target))
    assert IndexParams.batch_size == EncoderSection.model_fields["batch_size"].default
    assert _literal_defaults(IndexParams) == {"rows_per_shard", "engine", "ray_actors"}  # CLI only


def _literal_defaults(cls: type) -> set[str]:
    """The fields of a dataclass whose default is written as a literal in its class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return {
        node.target.id
        for node in tree.body[0].body
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and isinstance(node.value, ast.Constant)
        and node.value.value is not None
    }


def test_each_component_type_is_registered_once_with_its_schema_and_parts():
    """A registry's table is the only list of types: each class names its arguments' schema
    (`args`) and the pipeline's parts it takes (`needs`); its other parameters are the schema's
    fields, with the schema's defaults."""
    from ragvqa.components import COMPONENTS

    assert GENERATORS is READERS  # the old name
    for registry in (READERS, RERANKERS):
        assert list(component_args(registry)) == registry.in_order()
        for kind in registry.names():
            cls = registry.get(kind)
            schema, needs = cls.args, getattr(cls, "needs", ())
            assert set(needs) <= set(COMPONENTS), kind
            params = inspect.signature(cls).parameters
            named = {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD} - set(needs)
            open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
            assert named <= set(schema.model_fields), kind
            assert open_ended or set(schema.model_fields) <= named, kind
            for name in named - {"sampling"}:
                default, declared = params[name].default, schema.model_fields[name].default
                if default is not inspect.Parameter.empty and declared is not None:
                    assert declared == default, (kind, name)
    components = (REPO / "ragvqa" / "components.py").read_text()
    assert '"ret_sections"' not in components and '"entity_choice"' not in components


def test_every_kb_format_of_the_schema_has_a_reader():
    """The schema's formats are the readers' (one definition): each one reads, or asks for
    what it needs, rather than being an unknown format."""
    from ragvqa.errors import UserError
    from ragvqa.kb.readers import reader
    from ragvqa.schema.sections import FORMATS

    for fmt in FORMATS:
        try:
            reader(fmt, "/nonexistent/kb.json")
        except UserError as exc:
            assert "unknown KB format" not in str(exc), fmt


def test_the_reference_page_is_up_to_date():
    page = REPO / "docs" / "pipeline-reference.md"
    assert page.read_text(encoding="utf-8") == markdown(), (
        f"docs/pipeline-reference.md is out of date: run `{COMMAND}`"
    )
    assert "pipeline-reference.md" in (REPO / "docs" / "running.md").read_text(encoding="utf-8")
    # every section and every component type has its heading
    for heading in ("## `encoder`", "### `kb.source`", "### `index.faiss`", "## `retrieval`",
                    "## `rerank`", "### `reader.sampling`", "#### `type: vllm`",
                    "### `type: entity_choice`"):  # fmt: skip
        assert f"\n{heading}\n" in markdown(), heading
