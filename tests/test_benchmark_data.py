"""Each benchmark's data mapping has one home (issue 24): `benchmarks/<name>/benchmark.yaml`
names its catalogue entries (`data:` per default file, `related_data:` for the rest), and the
catalogue reads the benchmarks of each entry from there; the shipped catalogue says none."""

from __future__ import annotations

import pytest
import yaml

from ragvqa.data.catalogue import benchmark_data, load_catalogue
from ragvqa.errors import UserError
from ragvqa.fetch import catalogue

BOTH = ("evqa", "infoseek")
# what the catalogue's own `benchmarks:` lists said before they moved (issue 24)
BEFORE = {
    **dict.fromkeys(
        ["infoseek-val", "infoseek-train", "infoseek-val-withkb", "infoseek-train-withkb",
         "infoseek-val-qtype", "oven-images", "ret-m2kr-kb-infoseek50k",
         "m2kr-infoseek-passages", "m2kr-infoseek-test"],
        {"infoseek"},
    ),
    **dict.fromkeys(
        ["evqa-test", "evqa-val", "evqa-train", "evqa-kb", "gldv2-train", "inaturalist-2021",
         "m2kr-evqa-passages", "m2kr-evqa-data"],
        {"evqa"},
    ),
    **dict.fromkeys(
        ["ret-clip-vit-l-14", "ret-openclip-vit-h-14", "ret-openclip-vit-g-14",
         "qwen2.5-vl-7b-instruct"],
        set(BOTH),
    ),
    **dict.fromkeys(["minilm-l6-v2", "gemma-3-270m", "wiki-vital-leads"], {"wn-wiki"}),
}  # fmt: skip


def test_the_shipped_catalogue_reads_its_benchmarks_from_the_benchmark_files():
    raw = yaml.safe_load(catalogue.default_path().read_text(encoding="utf-8"))
    assert all("benchmarks" not in entry for entry in raw["artefacts"])  # one home only
    loaded = load_catalogue()
    assert {a.name: set(a.benchmarks) for a in loaded.artefacts} == BEFORE
    assert loaded.get("ret-clip-vit-l-14").benchmarks == BOTH  # in the benchmarks' name order


def test_benchmark_data_reads_data_and_related_data(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "benchmark.yaml").write_text(
        "data:\n  questions: q-one\n  images.x: imgs\nrelated_data: [kb, imgs]\n"
    )
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "benchmark.yaml").write_text("data:\n  questions: q-two\n")
    (tmp_path / "three").mkdir()
    (tmp_path / "three" / "benchmark.yaml").write_text("related_data: [kb]\n")
    (tmp_path / "notes").mkdir()  # a folder without benchmark.yaml is no benchmark
    assert benchmark_data(tmp_path) == {
        "q-one": ("one",),
        "imgs": ("one",),
        "kb": ("one", "three"),
        "q-two": ("two",),
    }
    (tmp_path / "two" / "benchmark.yaml").write_text("related_data: q-two\n")
    with pytest.raises(UserError, match=r"two/benchmark\.yaml: data: must map roles"):
        benchmark_data(tmp_path)


def test_a_benchmark_naming_an_unknown_entry_is_refused(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "benchmark.yaml").write_text("data:\n  questions: infoseek-vall\n")
    monkeypatch.setattr(catalogue, "resource_dir", lambda kind: tmp_path)
    with pytest.raises(UserError) as err:
        load_catalogue()
    assert str(err.value) == (
        f"{tmp_path}/mine/benchmark.yaml: unknown data artefact 'infoseek-vall'; "
        "did you mean 'infoseek-val'?"
    )


def test_a_catalogue_of_ones_own_may_still_name_benchmarks(tmp_path):
    entry = {"name": "mine", "description": "d", "kind": "manual", "instructions": "ask",
             "license": "l", "dest": "mine"}  # fmt: skip
    path = tmp_path / "cat.yaml"
    for said, expected in ((["b"], ("b",)), (None, ())):
        listed = {**entry, "benchmarks": said} if said else entry
        path.write_text(yaml.safe_dump({"version": 1, "artefacts": [listed]}))
        assert load_catalogue(path).get("mine").benchmarks == expected
