"""An output that is not a regular file (`--output /dev/null`, a named pipe) is written where it
is, never replaced by the atomic writers' rename (as root, the rename replaced /dev/null itself
with a regular file). A FIFO stands in for the device here: it takes the same path through the
writers and cannot harm the machine when the test fails."""

from __future__ import annotations

import os
import stat
import threading

from ragvqa.io import write_json, write_jsonl


def _read_fifo_while(tmp_path, write) -> str:
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    write(fifo)
    reader.join(timeout=20)
    assert stat.S_ISFIFO(fifo.stat().st_mode), "the pipe was replaced by a file"
    assert got, "nothing was written through the pipe"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary file left
    return got[0]


def test_write_json_writes_through_a_named_pipe(tmp_path):
    assert _read_fifo_while(tmp_path, lambda p: write_json(p, {"a": 1})) == '{\n  "a": 1\n}\n'


def test_write_jsonl_writes_through_a_named_pipe(tmp_path):
    rows = [{"data_id": "q1", "score": 1}, {"data_id": "q2", "score": 0}]
    text = _read_fifo_while(tmp_path, lambda p: write_jsonl(p, rows))
    assert text == '{"data_id":"q1","score":1}\n{"data_id":"q2","score":0}\n'
