"""Shared by the preparation commands: finding files, splitting, bad files.

`seqlvm data from-midi` and `seqlvm data from-audio` both turn a folder of
files into train / valid / test splits, and both must survive a bad file:
skip it, say why at the end, and still write the good ones (or stop at once
with `--strict`).
"""

import os
import random

from seqlvm.data.formats.pianoroll import DataError

__all__ = ["SPLITS", "find_files", "split_files", "Problems"]

SPLITS = ("train", "valid", "test")


def find_files(directory, extensions):
  """Files under `directory` whose extension is in `extensions`, sorted.

  Args:
    directory: the folder to walk (recursively; hidden entries are skipped).
    extensions: lower-case extensions with the dot, e.g. (".mid", ".midi");
      matched case-insensitively (TIMIT's files end in .WAV). None: every
      file.

  Returns:
    paths: sorted relative paths (with "/" separators).

  Raises:
    DataError: if `directory` is missing or not a folder.
  """
  if not os.path.exists(directory):
    raise DataError(f"{directory}: no such folder.")
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: not a folder.")
  found = []
  for root, dirs, files in os.walk(directory):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    for name in files:
      if not name.startswith(".") and (extensions is None or os.path.splitext(
          name)[1].lower() in extensions):
        found.append(os.path.relpath(os.path.join(root, name),
                                     directory).replace(os.sep, "/"))
  return sorted(found)


def split_files(paths, seed=0, valid_fraction=0.1, test_fraction=0.1):
  """Assigns relative paths to splits.

  If the top-level folders are named train / valid / test (any case; at
  least "train"), each file goes to its folder's split and files elsewhere
  are ignored. Otherwise the sorted paths are shuffled with `seed` and the
  first `valid_fraction` go to valid, the next `test_fraction` to test.

  Returns:
    splits: dict split -> sorted relative paths; layout: "folders" or
    "shuffled".
  """
  by_folder = {s: [] for s in SPLITS}
  for path in paths:
    top = path.split("/", 1)[0].lower() if "/" in path else ""
    if top in by_folder:
      by_folder[top].append(path)
  if by_folder["train"]:
    return by_folder, "folders"
  if not (0 <= valid_fraction < 1 and 0 <= test_fraction < 1 and
          valid_fraction + test_fraction < 1):
    raise DataError(f"valid and test fractions must be in [0, 1) with a sum "
                    f"below 1, got {valid_fraction} and {test_fraction}.")
  shuffled = sorted(paths)
  random.Random(seed).shuffle(shuffled)
  num_valid = int(round(len(shuffled) * valid_fraction))
  num_test = int(round(len(shuffled) * test_fraction))
  return {
      "valid": sorted(shuffled[:num_valid]),
      "test": sorted(shuffled[num_valid:num_valid + num_test]),
      "train": sorted(shuffled[num_valid + num_test:]),
  }, "shuffled"


class Problems:
  """Collects the files a preparation run had to skip.

  With `strict=True` the first problem raises `DataError` at once.
  """

  def __init__(self, strict=False):
    self.strict = strict
    self.items = []  # (path, reason)

  def add(self, path, reason):
    if self.strict:
      raise DataError(f"{path}: {reason} (stopped: --strict).")
    self.items.append((str(path), str(reason)))

  def __len__(self):
    return len(self.items)

  def report(self, limit=20):
    """A readable summary, or "" if nothing was skipped."""
    if not self.items:
      return ""
    lines = [f"Skipped {len(self.items)} file(s):"]
    lines += [f"  {path}: {reason}" for path, reason in self.items[:limit]]
    if len(self.items) > limit:
      lines.append(f"  ... and {len(self.items) - limit} more (all listed in "
                   "the manifest).")
    return "\n".join(lines)

  def to_list(self):
    return [{"file": path, "reason": reason} for path, reason in self.items]
