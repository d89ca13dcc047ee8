"""Atomic file writes: a file appears whole under its name or not at all."""

import contextlib
import json
import os
import tempfile

__all__ = ["atomic_write", "write_json"]


@contextlib.contextmanager
def atomic_write(path, mode="w"):
  """Opens a temporary file beside `path`; renames it to `path` on success.

  Yields:
    f: the open temporary file (text for mode "w", bytes for "wb"). A failure
      inside the block removes it and leaves any old `path` untouched.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory,
                             prefix="." + os.path.basename(path) + ".",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, mode) as f:
      yield f
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only.
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_json(values, path):
  """Writes `values` as indented JSON, atomically."""
  with atomic_write(path) as f:
    json.dump(values, f, indent=2, sort_keys=True)
    f.write("\n")
