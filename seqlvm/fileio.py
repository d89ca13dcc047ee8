"""Writing files: atomically, and with one clear error when writing fails.

The rules every file seqlvm writes follows:
- It goes through `atomic_write` (or `write_json`): a temporary file beside
  the target, renamed over it on success, so a file appears whole under its
  name or not at all. (Checkpoints are TensorFlow's, which writes temporary
  files and renames them the same way; TensorBoard event files are appended
  to by TensorFlow.)
- A failure to write (a read-only folder, a full disk, a path whose parent is
  a file) raises `WriteError`, whose message names the path and the reason;
  the command line reports it in one line with exit status 2.
"""

import contextlib
import json
import os
import tempfile

from seqlvm.errors import WriteError

__all__ = ["WriteError", "atomic_write", "write_json", "publish",
           "make_dirs", "check_writable_dir"]


def _describe(error):
  return error.strerror or type(error).__name__


def make_dirs(directory, what="folder"):
  """`os.makedirs(directory, exist_ok=True)`, with a `WriteError` naming it.

  Raises:
    WriteError: if the folder cannot be made, or the path is not a folder.
  """
  directory = os.fspath(directory)
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise WriteError(f"{directory}: cannot write the {what} here: a file of "
                     "that name exists (not a folder).")
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise WriteError(f"{directory}: cannot make the {what} "
                     f"({_describe(e)}: {e.filename or directory}).") from e


def check_writable_dir(directory, what="folder"):
  """Makes `directory` if needed and checks that files can be created in it,
  before any long work whose results would go there.

  Raises:
    WriteError: naming the folder, if it cannot be made or written.
  """
  make_dirs(directory, what)
  try:
    fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-check.")
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise WriteError(f"{directory}: cannot write to the {what} "
                     f"({_describe(e)}).") from e


@contextlib.contextmanager
def atomic_write(path, mode="w"):
  """Opens a temporary file beside `path`; renames it to `path` on success.

  Yields:
    f: the open temporary file (text for mode "w", bytes for "wb"). A failure
      inside the block removes it and leaves any old `path` untouched.

  Raises:
    WriteError: naming `path`, if its folder cannot be made, the temporary
      file cannot be created or written, or the rename fails.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  if os.path.isdir(path):
    raise WriteError(f"{path}: cannot write this file: a folder of that name "
                     "exists.")
  make_dirs(directory)
  tmp = None
  try:
    fd, tmp = tempfile.mkstemp(dir=directory,
                               prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    with os.fdopen(fd, mode) as f:
      yield f
    publish(tmp, path)
  except OSError as e:
    raise WriteError(f"{path}: cannot write ({_describe(e)}).") from e
  finally:
    if tmp is not None and os.path.exists(tmp):
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


def write_text(text, path):
  """Writes `text` atomically (UTF-8)."""
  with atomic_write(path, "w") as f:
    f.write(text)
