"""Training checkpoints on disk (`ragvqa.train.state`): saving a step again never leaves a moment
without a complete checkpoint, and what a killed save leaves is still found."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragvqa.train.state import STATE, _put_in_place, list_checkpoints


def checkpoint(folder: Path, name: str, content: str) -> Path:
    """A complete checkpoint folder (its state file is what makes it complete)."""
    path = folder / name
    path.mkdir(parents=True)
    (path / STATE).write_text(content)
    return path


def test_saving_a_step_again_replaces_it_with_a_checkpoint_on_disk_throughout(
    tmp_path, monkeypatch
):
    final = checkpoint(tmp_path, "step-0000003", "old")
    new = checkpoint(tmp_path, ".tmp-step-0000003", "new")
    seen = []
    rename = Path.rename

    def watched(self: Path, target: Path) -> Path:  # what is complete around each rename
        seen.append([p.name for p in list_checkpoints(tmp_path)])
        result = rename(self, target)
        seen.append([p.name for p in list_checkpoints(tmp_path)])
        return result

    monkeypatch.setattr(Path, "rename", watched)
    _put_in_place(new, final)
    assert all(seen) and len(seen) == 4  # two renames, never a moment with none
    assert seen[1] == ["step-0000003.old"]  # the old one moved aside, still counted
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000003"]
    assert (final / STATE).read_text() == "new"


def test_a_save_killed_between_its_renames_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    final = checkpoint(tmp_path, "step-0000003", "old")
    new = checkpoint(tmp_path, ".tmp-step-0000003", "new")
    rename = Path.rename

    def killed(self: Path, target: Path) -> Path:
        if self == new:
            raise KeyboardInterrupt  # stands for kill -9 after the first rename
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        _put_in_place(new, final)
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000003.old"]
    _put_in_place(new, final)  # the next save of the step clears it
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["step-0000003"]
    assert (final / STATE).read_text() == "new"


def test_a_checkpoint_moved_aside_sorts_before_its_step(tmp_path):
    for name in ("step-0000010", "step-0000002.old", "step-0000002", "step-0000001"):
        checkpoint(tmp_path, name, name)
    (tmp_path / "step-0000011").mkdir()  # incomplete: no state file
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step-0000001", "step-0000002.old", "step-0000002", "step-0000010"]
