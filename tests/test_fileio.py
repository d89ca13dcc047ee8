import os

import pytest

from seqlvm import fileio


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
  path = tmp_path / "results.json"
  fileio.write_json({"a": 1}, path)
  with pytest.raises(RuntimeError):
    with fileio.atomic_write(path) as f:
      f.write("{half a fi")
      raise RuntimeError("killed mid-write")
  assert path.read_text() == '{\n  "a": 1\n}\n'
  assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
  path = tmp_path / "a.json"
  fileio.write_json({"a": 1}, path)
  mask = os.umask(0)
  os.umask(mask)
  assert path.stat().st_mode & 0o777 == 0o666 & ~mask
