"""Dataset names: what --data NAME finds, and what a run stores."""

import os

import pytest

from seqlvm.data import registry
from seqlvm.data.formats import speech
from seqlvm.errors import DataError


def test_bare_names_are_not_paths():
  assert registry.is_bare_name("jsb") and registry.is_bare_name("my-set.v2")
  for path in (".", "..", "a/b", "/abs", "", None):
    assert not registry.is_bare_name(path)


def test_names_in_the_data_directory_and_canonical_forms(tmp_path,
                                                         monkeypatch):
  monkeypatch.setenv("SEQLVM_DATA_DIR", str(tmp_path))
  (tmp_path / "mine.pkl").write_bytes(b"")
  (tmp_path / "talk").mkdir()
  (tmp_path / "talk" / speech.MANIFEST_NAME).write_text("{}")
  assert registry.named_path("mine") == str(tmp_path / "mine.pkl")
  assert registry.named_path("talk") == str(tmp_path / "talk")
  assert registry.named_path("absent") is None
  assert registry.canonical("mine") == "mine"   # a name stays a name
  assert registry.canonical("jsb") == "jsb"
  # A path that exists is stored absolute; one that does not, as given.
  (tmp_path / "here").mkdir()
  (tmp_path / "here" / "x.pkl").write_bytes(b"")
  monkeypatch.chdir(tmp_path)
  assert registry.canonical("here/x.pkl") == str(tmp_path / "here" / "x.pkl")
  assert registry.canonical("here/nowhere.pkl") == "here/nowhere.pkl"


def test_missing_sets_say_how_to_get_them(tmp_path, monkeypatch):
  monkeypatch.setenv("SEQLVM_DATA_DIR", str(tmp_path))
  with pytest.raises(DataError, match="seqlvm data fetch nottingham"):
    registry.resolve("nottingham")
  with pytest.raises(DataError, match="no such file or folder"):
    registry.resolve(os.path.join(str(tmp_path), "none.pkl"))
  assert registry.NAMED_SETS == ("jsb", "nottingham", "musedata",
                                 "piano-midi")
  from seqlvm.data.prepare import fetch  # pylint: disable=g-import-not-at-top
  assert set(registry.NAMED_SETS) == set(fetch.load_manifest())
