"""Turns the --data argument (a name or a path) into a dataset path.

Names, looked up in this order:
- "chorales": the embedded music default, prepared on first use;
- "speech-demo": the embedded speech default (synthesised with espeak-ng),
  prepared on first use;
- any NAME with NAME.pkl (a pianoroll pickle) or NAME/manifest.json (a
  prepared speech set) in the data directory: the four standard sets after
  `seqlvm data fetch`, and what `seqlvm data from-midi|from-audio --out NAME`
  wrote there.
Anything else is taken as a path to a pickle or a prepared speech folder.
"""

import os
import re

from seqlvm import registry
from seqlvm.data.formats import pianoroll
from seqlvm.data.formats import speech
from seqlvm.data.prepare import chorales

__all__ = ["resolve", "canonical", "NAMED_SETS", "DEFAULT", "SPEECH_DEFAULT",
           "named_path", "is_bare_name"]

DEFAULT = "chorales"
SPEECH_DEFAULT = "speech-demo"
# The four standard sets (`seqlvm data fetch NAME`).
NAMED_SETS = registry.PIANOROLL_SETS


_BARE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def is_bare_name(text):
  """A dataset name (no folder part, not "." or ".."), not a path."""
  return bool(_BARE_NAME.match(text or "")) and text not in (".", "..")


def named_path(name, directory=None):
  """NAME.pkl (or NAME itself if it ends in .pkl) or NAME/ with a manifest
  in the data directory if one exists, else None."""
  directory = directory or chorales.data_dir()
  pickles = [f"{name}.pkl"] + ([name] if name.endswith(".pkl") else [])
  for candidate in [os.path.join(directory, p) for p in pickles] + [
      os.path.join(directory, name, speech.MANIFEST_NAME)]:
    if os.path.exists(candidate):
      return (candidate if candidate.endswith(".pkl")
              else os.path.dirname(candidate))
  return None


def canonical(data):
  """`data` in the form a run stores: one that means the same from any folder.

  A dataset name (the embedded defaults, the standard sets, a NAME prepared
  into the data directory) stays a name; a path that exists becomes
  absolute; anything else (a path that does not exist) is returned as given,
  for `resolve` to report.
  """
  if data in (DEFAULT, SPEECH_DEFAULT) or data in NAMED_SETS:
    return data
  if is_bare_name(data) and named_path(data):
    return data
  if os.path.exists(data):
    return os.path.abspath(data)
  return data


def resolve(data, progress=True):
  """Returns the path of the dataset `data` names (see the module doc).

  Args:
    data: a dataset name or a path.
    progress: print progress while preparing an embedded default.

  Raises:
    DataError: if a named set is not there (with the command that gets it)
      or a path does not exist.
  """
  if data == DEFAULT:
    return chorales.prepare_chorales(progress=progress)
  if data == SPEECH_DEFAULT:
    from seqlvm.data.prepare import speech_demo  # pylint: disable=g-import-not-at-top
    return speech_demo.prepare_speech_demo(progress=progress)
  if is_bare_name(data):
    found = named_path(data)
    if found:
      return found
  if data in NAMED_SETS:
    raise pianoroll.DataError(
        f"The {data!r} set is not in the data directory "
        f"({chorales.data_dir()}). Download it with `seqlvm data fetch "
        f"{data}` (or `--from PATH` for a local copy), or pass --data PATH "
        "to a pianoroll pickle.")
  if not os.path.exists(data):
    raise pianoroll.DataError(
        f"{data}: no such file or folder, and not a dataset name (the "
        f"embedded {DEFAULT!r} and {SPEECH_DEFAULT!r}, the standard "
        f"{', '.join(NAMED_SETS)} after `seqlvm data fetch`, or a NAME "
        f"prepared into {chorales.data_dir()}).")
  return data
