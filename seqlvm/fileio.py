"""Atomic file writes: a file appears whole under its name or not at all."""

import contextlib
import json
import os
import tempfile

__all__ = ["atomic_write", "write_json", "publish"]


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
    publish(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _read_umask():
  mask = os.umask(0o022)  # Read once, at import, before any thread starts.
  os.umask(mask)
  return mask


_UMASK = _read_umask()


def publish(tmp, path):
  """Gives the finished temporary file `tmp` ordinary permissions (mkstemp
  makes it owner-only) and renames it to `path`."""
  os.chmod(tmp, 0o666 & ~_UMASK)
  os.replace(tmp, path)


def write_json(values, path):
  """Writes `values` as indented JSON, atomically."""
  with atomic_write(path) as f:
    json.dump(values, f, indent=2, sort_keys=True)
    f.write("\n")
