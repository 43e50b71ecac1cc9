"""The options of `kb build`, `index build` and `serve` are made from the settings models: every
field has its option, under its own name (old names kept as aliases), with the model's default,
and a bad value is refused by the model in one line naming the option."""

from __future__ import annotations

import json

import pytest
import typer
from conftest import write_evqa_kb
from typer.testing import CliRunner

from ragvqa.cli.index import build as index_build
from ragvqa.cli.kb import build as kb_build
from ragvqa.cli.main import app
from ragvqa.cli.serve import serve_command
from ragvqa.kb.store import MANIFEST
from ragvqa.schema.options import flag, flags
from ragvqa.schema.sections import EncoderSection, FaissSection, IndexSection, KBSource
from ragvqa.serve.settings import Settings

# a setting given by another option (the option, and why)
OTHER_OPTION = {
    ("serve", "max_request_bytes"): "--max-request-mb",  # in MiB on the command line
    ("serve", "can_save"): "--prompts",  # a prompts folder of the user's
}


def _command(function):
    one = typer.Typer()
    one.command()(function)
    return typer.main.get_command(one)


@pytest.mark.parametrize(
    ("name", "function", "models"),
    [
        ("kb", kb_build, (KBSource,)),
        ("index", index_build, (FaissSection,)),
        ("serve", serve_command, (Settings,)),
    ],
)
def test_every_setting_has_its_option_with_the_models_default(name, function, models):
    command = _command(function)
    options = flags(command)
    by_flag = {opt: p for p in command.params for opt in getattr(p, "opts", ())}
    for model in models:
        for field, info in model.model_fields.items():
            wanted = OTHER_OPTION.get((name, field), flag(field))
            assert wanted in options, (name, field)
            if wanted == flag(field) and not info.is_required():
                assert by_flag[wanted].default == info.default, (name, field)
    if name == "index":
        for model, field in ((IndexSection, "doc_template"), (EncoderSection, "batch_size")):
            assert by_flag[flag(field)].default == model.model_fields[field].default
        assert {"--type", "--pq-m"} <= options  # the old names of --kind and --m
    if name == "serve":
        assert "--batch-window-ms" in options  # the old name of --window-ms


def test_kb_build_takes_every_kb_source_key_and_refuses_a_bad_one_in_one_line(tmp_path):
    runner = CliRunner()
    source = write_evqa_kb(tmp_path)
    args = ["kb", "build", "--format", "evqa", "--input", str(source), "--no-progress"]
    out = tmp_path / "kb"
    result = runner.invoke(app, [*args, "--out", str(out), "--shard-pages", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert len(manifest["shards"]) == 3  # one page per shard
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--chunking", "token"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --chunking: expected one of section, tokens, got 'token'; did you mean 'tokens'?"
    ]
    assert not (tmp_path / "o").exists()  # refused before any folder was made


def test_index_build_refuses_a_bad_faiss_setting_by_its_yaml_name(tmp_path):
    kb = tmp_path / "kb"
    source = str(write_evqa_kb(tmp_path))
    made = ["kb", "build", "--format", "evqa", "--input", source, "--out", str(kb), "--no-progress"]
    assert CliRunner().invoke(app, made).exit_code == 0
    args = ["index", "build", "--kb", str(kb), "--encoder", "x", "--out", str(tmp_path / "i")]
    result = CliRunner().invoke(app, [*args, "--type", "ivfpqq"])
    assert result.exit_code == 2 and "did you mean 'ivfpq'" in result.stderr
    assert result.stderr.startswith("error: --kind: expected one of flat, ivfpq, hnsw")
    result = CliRunner().invoke(app, [*args, "--nbits", "0"])
    assert result.exit_code == 2
    assert "--nbits: expected integer >= 1, got 0" in result.stderr
    assert not (tmp_path / "i").exists()
