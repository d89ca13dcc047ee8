"""Finding files and splitting them: shared by from-midi and from-audio."""

import pytest

from seqlvm.data.prepare import collect
from seqlvm.errors import DataError


def test_find_files_is_recursive_case_insensitive_and_skips_hidden(
    tmp_path):
  for name in ("a.MID", "sub/b.midi", "sub/c.txt", ".hidden/d.mid",
               "sub/.e.mid"):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"")
  assert collect.find_files(str(tmp_path), (".mid", ".midi")) == [
      "a.MID", "sub/b.midi"]
  assert collect.find_files(str(tmp_path), None) == [
      "a.MID", "sub/b.midi", "sub/c.txt"]
  with pytest.raises(DataError, match="no such folder"):
    collect.find_files(str(tmp_path / "none"), None)
  with pytest.raises(DataError, match="not a folder"):
    collect.find_files(str(tmp_path / "a.MID"), None)


def test_split_folders_win_over_a_shuffle():
  splits, layout = collect.split_files(
      ["Train/a", "train/b", "VALID/c", "test/d", "other/e"])
  assert layout == "folders"
  assert splits == {"train": ["Train/a", "train/b"], "valid": ["VALID/c"],
                    "test": ["test/d"]}


def test_a_seeded_shuffle_keeps_every_file_once():
  paths = [f"f{i:02d}" for i in range(20)]
  splits, layout = collect.split_files(paths, seed=3, valid_fraction=0.1,
                                       test_fraction=0.25)
  assert layout == "shuffled"
  assert [len(splits[s]) for s in ("train", "valid", "test")] == [13, 2, 5]
  assert sorted(sum(splits.values(), [])) == paths
  again, _ = collect.split_files(list(reversed(paths)), seed=3,
                                 valid_fraction=0.1, test_fraction=0.25)
  assert again == splits  # the order given does not matter
  with pytest.raises(DataError, match="sum below 1"):
    collect.split_files(paths, valid_fraction=0.6, test_fraction=0.5)


def test_problems_are_listed_or_stop_a_strict_run():
  problems = collect.Problems()
  assert problems.report() == ""
  for i in range(3):
    problems.add(f"f{i}", "broken")
  assert len(problems) == 3
  assert problems.report(limit=2).splitlines() == [
      "Skipped 3 file(s):", "  f0: broken", "  f1: broken",
      "  ... and 1 more (all listed in the manifest)."]
  assert problems.to_list()[0] == {"file": "f0", "reason": "broken"}
  with pytest.raises(DataError, match="f9: broken .stopped: --strict"):
    collect.Problems(strict=True).add("f9", "broken")
