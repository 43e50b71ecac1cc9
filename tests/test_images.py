"""Image path resolution for OVEN, GLDv2 and iNaturalist layouts; missing images reported."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ragvqa.data.images import GldV2Images, ImageRoots, OvenImages, load_id2name, resolve_images
from ragvqa.errors import UserError
from ragvqa.types import BenchmarkExample


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), "red").save(path, format="JPEG")
    return path


def test_oven_any_extension_and_flat_layout(tmp_path):
    a = _img(tmp_path / "04" / "oven_04990048.JPEG")
    b = _img(tmp_path / "05" / "oven_05001968.jpg")
    c = _img(tmp_path / "oven_01000000.png")  # M2KR's flat archives
    oven = OvenImages(tmp_path)
    assert oven.resolve("oven_04990048") == a
    assert oven.resolve("oven_05001968") == b
    assert oven.resolve("oven_01000000") == c
    assert oven.resolve("oven_04000001") is None


def test_gldv2_with_and_without_train_folder(tmp_path):
    a = _img(tmp_path / "train" / "0" / "1" / "2" / "0123456789abcdef.jpg")
    assert GldV2Images(tmp_path).resolve("0123456789abcdef") == a
    assert GldV2Images(tmp_path / "train").resolve("0123456789abcdef") == a
    assert GldV2Images(tmp_path).resolve("fedcba9876543210") is None


def test_inat_id2name_both_formats(tmp_path):
    (tmp_path / "official.json").write_text(
        json.dumps({"images": [{"id": 1234, "file_name": "val/00001_x/a.jpg"}], "annotations": []})
    )
    (tmp_path / "flat.json").write_text(json.dumps({"1234": "val/00001_x/a.jpg"}))
    assert load_id2name(tmp_path / "official.json") == {"1234": "val/00001_x/a.jpg"}
    assert load_id2name(tmp_path / "flat.json") == {"1234": "val/00001_x/a.jpg"}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="bad.json: expected"):
        load_id2name(tmp_path / "bad.json")


def test_resolve_images_reports_missing_per_example(tmp_path):
    gld = _img(tmp_path / "gld" / "train" / "a" / "b" / "c" / "abc0000000000000.jpg")
    nat = _img(tmp_path / "inat" / "val" / "x.jpg")
    (tmp_path / "id2name.json").write_text(json.dumps({"77": "val/x.jpg", "78": "val/gone.jpg"}))
    examples = [
        BenchmarkExample(
            "0", "evqa", "q", image_ids=("abc0000000000000",), image_dataset="landmarks"
        ),
        BenchmarkExample("1", "evqa", "q", image_ids=("77",), image_dataset="inaturalist"),
        BenchmarkExample("2", "evqa", "q", image_ids=("78",), image_dataset="inaturalist"),
        BenchmarkExample("3", "evqa", "q", image_ids=("99",), image_dataset="inaturalist"),
        BenchmarkExample("4", "evqa", "q", image_ids=(), image_dataset="landmarks"),
    ]
    roots = ImageRoots(
        landmarks=tmp_path / "gld",
        inaturalist=tmp_path / "inat",
        inaturalist_id2name=tmp_path / "id2name.json",
    )
    resolved, missing = resolve_images(examples, roots)
    assert [e.image_path for e in resolved] == [str(gld), str(nat), None, None, None]
    assert missing == ["2", "3", "4"]


def test_missing_root_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        resolve_images([], ImageRoots(oven=tmp_path / "nope"))
    with pytest.raises(UserError, match="id -> file-name JSON"):
        resolve_images([], ImageRoots(inaturalist=tmp_path))
