"""The package's exception types, in one place.

Every error seqlvm raises on purpose derives from `SeqlvmError` and names the
problem and, where there is one, the file. The command line turns each into
one line and exit status 2 (`seqlvm.cli`); library users can catch
`SeqlvmError` or the specific type. Each type also derives from the builtin
that matches it (ValueError for bad values, RuntimeError for a failed run),
so code written against the builtins keeps working.

Recommended import: `from seqlvm import errors`.
"""

__all__ = ["SeqlvmError", "ConfigError", "DataError", "FetchError",
           "DataMismatchError", "WriteError", "RunLockedError",
           "CheckpointError", "TrainingError", "SamplingBudgetError"]


class SeqlvmError(Exception):
  """The base of every error seqlvm raises on purpose."""


class ConfigError(SeqlvmError, ValueError):
  """An invalid or conflicting configuration (a flag, a config.json)."""


class DataError(SeqlvmError, ValueError):
  """Bad input data; the message names the file and the problem."""


class FetchError(DataError):
  """A download failed or its content does not match the manifest."""


class DataMismatchError(SeqlvmError, ValueError):
  """The data is not the data the run was trained on."""


class WriteError(SeqlvmError, RuntimeError):
  """A file or folder could not be written; the message names it."""


class RunLockedError(SeqlvmError, RuntimeError):
  """Another process is training this run directory."""


class CheckpointError(SeqlvmError, RuntimeError):
  """No usable checkpoint; the message names the files."""


class TrainingError(SeqlvmError, RuntimeError):
  """Training stopped (a non-finite bound or gradient, say)."""


class SamplingBudgetError(SeqlvmError, RuntimeError):
  """Sampling would take longer than its time budget."""
