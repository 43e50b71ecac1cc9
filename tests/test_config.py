"""YAML configs: base inheritance, overrides, and components built from registry specs."""

from __future__ import annotations

import pytest

from ragvqa.config import build, load_config, merge, set_override
from ragvqa.errors import UserError
from ragvqa.registry import GENERATORS


def test_merge_and_overrides():
    base = {
        "reader": {"type": "vllm", "sampling": {"max_tokens": 32, "temperature": 0.0}},
        "top_k": 5,
    }
    merged = merge(base, {"reader": {"sampling": {"max_tokens": 64}}, "top_k": 10})
    assert merged == {
        "reader": {"type": "vllm", "sampling": {"max_tokens": 64, "temperature": 0.0}},
        "top_k": 10,
    }
    assert base["reader"]["sampling"]["max_tokens"] == 32  # inputs untouched
    set_override(merged, "reader.sampling.temperature=0.7")
    set_override(merged, "rerank.alpha=0.5")
    set_override(merged, "prompt=answer/evidence_short@1")
    set_override(merged, "ks=[1, 5, 10]")
    set_override(merged, "reader.enforce_eager=true")
    assert merged["reader"]["sampling"]["temperature"] == 0.7
    assert merged["rerank"] == {"alpha": 0.5}
    assert merged["prompt"] == "answer/evidence_short@1" and merged["ks"] == [1, 5, 10]
    assert merged["reader"]["enforce_eager"] is True
    with pytest.raises(UserError, match="must look like key.path=value"):
        set_override(merged, "no-equals-sign")
    with pytest.raises(UserError, match="'top_k' is not a mapping"):
        set_override(merged, "top_k.x=1")


def test_base_inheritance_and_errors(tmp_path):
    (tmp_path / "base.yaml").write_text("reader:\n  type: vllm\n  model: big\ntop_k: 5\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nreader:\n  model: small\n")
    config = load_config(tmp_path / "child.yaml", ["top_k=3"])
    assert config == {"reader": {"type": "vllm", "model": "small"}, "top_k": 3}
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(UserError, match="in a cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "bad.yaml").write_text("reader: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_build_component_from_a_spec():
    reader = build(
        GENERATORS,
        {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "concurrency": 3},
    )
    assert (reader.base_url, reader.model, reader.concurrency) == ("http://127.0.0.1:9/v1", "m", 3)
    with pytest.raises(UserError, match="generator 'openai': .*unexpected keyword .*temprature"):
        build(GENERATORS, {"type": "openai", "base_url": "x", "model": "m", "temprature": 1})
    with pytest.raises(UserError, match="did you mean 'openai'"):
        build(GENERATORS, {"type": "opena"})
    with pytest.raises(UserError, match="needs a mapping with a 'type'"):
        build(GENERATORS, {"model": "m"})


def test_origins_name_the_file_line_or_override_that_set_each_key(tmp_path):
    """Where each key of the merged mapping was set last: a mapping merged over an inherited
    one keeps the inherited keys' origins; a replaced value drops them; `--set` wins."""
    from ragvqa.config import Origin, load_located

    (tmp_path / "base.yaml").write_text(
        "reader:\n  generator:\n    type: vllm\n    model: big\nretrieval:\n  top_k: 5\n"
    )
    (tmp_path / "child.yaml").write_text(
        "# a comment\nbase: base.yaml\nreader:\n  generator:\n    model: small\nretrieval: 3\n"
    )
    child = str(tmp_path / "child.yaml")
    data, origins = load_located(child, ["reader.prompt=x@1"])
    assert data["reader"]["generator"] == {"type": "vllm", "model": "small"}
    base = str((tmp_path / "base.yaml").resolve())
    assert origins[("reader", "generator", "type")] == Origin(base, 3)
    assert origins[("reader", "generator", "model")] == Origin(child, 5)
    assert origins[("reader",)] == Origin(child, 3)
    assert origins[("retrieval",)] == Origin(child, 6)
    assert ("retrieval", "top_k") not in origins  # replaced by the child's scalar
    assert origins[("reader", "prompt")] == Origin(None, None, "reader.prompt=x@1")
    # an override that replaces a mapping drops what the files set inside it
    _, origins = load_located(child, ["reader.generator={type: openai}"])
    assert ("reader", "generator", "model") not in origins
    assert origins[("reader", "generator")].override == "reader.generator={type: openai}"


def test_unreadable_config_files_are_one_line(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(UserError, match=r"latin1.yaml: a config file must be UTF-8 text"):
        load_config(tmp_path / "latin1.yaml")
    with pytest.raises(UserError, match=r"must be a file, not a folder"):
        load_config(tmp_path)
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match=r"list.yaml: a config file must be a YAML mapping"):
        load_config(tmp_path / "list.yaml")
