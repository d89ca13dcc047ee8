"""Turns the --data argument (a name or a path) into a pianoroll pickle path."""

import os

from seqlvm.data import chorales
from seqlvm.data import pianoroll

__all__ = ["resolve", "NAMED_SETS", "DEFAULT"]

DEFAULT = "chorales"
# The four standard sets are looked up by name in the data directory.
NAMED_SETS = ("jsb", "nottingham", "musedata", "piano-midi")


def resolve(data, progress=True):
  """Returns the pickle path for `data`.

  Args:
    data: "chorales" (the embedded default, prepared on first use), one of
      the standard set names (expected as NAME.pkl in the data directory), or
      a path to a pianoroll pickle.
    progress: print progress while preparing the default.

  Raises:
    DataError: if a named set or a path does not exist.
  """
  if data == DEFAULT:
    return chorales.prepare_chorales(progress=progress)
  if data in NAMED_SETS:
    path = os.path.join(chorales.data_dir(), f"{data}.pkl")
    if not os.path.exists(path):
      raise pianoroll.DataError(
          f"{path}: the {data!r} set is not in the data directory. Copy its "
          f"pickle there as {data}.pkl, or pass --data PATH to a pianoroll "
          "pickle.")
    return path
  if not os.path.exists(data):
    raise pianoroll.DataError(
        f"{data}: no such file, and not a known dataset name (known: "
        f"{', '.join((DEFAULT,) + NAMED_SETS)}).")
  return data
