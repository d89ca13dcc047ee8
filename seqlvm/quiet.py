"""Quiet TensorFlow: its start-up noise and warnings kept out of the way.

On a machine without a GPU, importing TensorFlow prints four or five lines
from its C++ core before its own logging is set up ("Could not find cuda
drivers", an error-level "failed call to cuInit", ...), and a checkpoint that
fails to restore makes its Python logger print a warning per unmatched
variable after seqlvm's own one-line message. `import_tensorflow` imports it
(and initialises its devices) with the C-level stderr captured, passes on
every line that is not one of the known start-up messages, and sets
TensorFlow's Python logger to errors only. `verbose=True` leaves everything
as TensorFlow prints it (`seqlvm ... --verbose`).

TensorFlow's C++ logging is set below warnings (TF_CPP_MIN_LOG_LEVEL=2)
unless the environment sets it already; it must be set before TensorFlow is
imported, which is why the CLI calls `set_log_level` first.
"""

import logging
import os
import re
import sys
import tempfile

__all__ = ["set_log_level", "import_tensorflow", "is_start_up_noise"]

# Lines TensorFlow's C++ core prints at start-up that say nothing to a user
# of seqlvm: the CUDA probe on a machine without a GPU, the duplicate
# registrations of CUDA plugins, the CPU build notes.
_NOISE = re.compile("|".join([
    r"All log messages before absl::InitializeLog\(\) is called",
    r"cudart_stub\.cc", r"failed call to cuInit", r"cuda_platform\.cc",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"TF-TRT Warning", r"computation placer already registered",
    r"oneDNN custom operations are on",
    r"This TensorFlow binary is optimized to use available CPU",
    r"To enable the following instructions",
    r"rebuild TensorFlow with the appropriate compiler flags",
    r"Attempting to register factory for plugin",
]))

_imported = False


def set_log_level(verbose=False):
  """TensorFlow's C++ log level (2: errors only) unless the environment
  sets one or `verbose`; call before TensorFlow is imported."""
  if verbose:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
  else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def is_start_up_noise(line):
  """Whether `line` is one of TensorFlow's known start-up messages."""
  return bool(_NOISE.search(line))


def import_tensorflow(verbose=False):
  """Imports TensorFlow and initialises its devices quietly.

  The C-level stderr is captured while TensorFlow loads; lines that are not
  start-up noise are written to stderr afterwards, so a real problem is
  still seen. Its Python logger is set to errors only (warnings with
  `verbose`). Safe to call more than once, and a no-op for the capture when
  TensorFlow is already imported.

  Returns:
    tf: the tensorflow module.
  """
  global _imported
  set_log_level(verbose)
  if verbose or _imported or "tensorflow" in sys.modules:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    _imported = True
    if not verbose:
      tf.get_logger().setLevel(logging.ERROR)
    return tf
  captured = _captured_import()
  for line in captured.splitlines():
    if line.strip() and not is_start_up_noise(line):
      print(line, file=sys.stderr)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel(logging.ERROR)
  _imported = True
  return tf


def _captured_import():
  """Imports TensorFlow with file descriptor 2 redirected; the text."""
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # No stderr to capture.
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
    return ""
  with tempfile.TemporaryFile() as capture:
    os.dup2(capture.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()  # The CUDA probe happens here.
    except BaseException:
      # The captured lines usually say why the import failed: pass them on.
      _restore(saved)
      capture.seek(0)
      sys.stderr.write(capture.read().decode("utf-8", errors="replace"))
      raise
    _restore(saved)
    capture.seek(0)
    return capture.read().decode("utf-8", errors="replace")


def _restore(saved):
  """Points file descriptor 2 back at the saved stderr."""
  sys.stderr.flush()
  os.dup2(saved, 2)
  os.close(saved)
