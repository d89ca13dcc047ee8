"""Polyphonic pianorolls in the Boulanger-Lewandowski et al. (2012) format.

A pianoroll pickle holds a dict with keys 'train', 'valid' and 'test'; each a
list of sequences; each sequence a list of timesteps; each timestep a
collection of MIDI note numbers in 21..108 (the 88 piano keys). In memory a
sequence is a binary float32 array `[T, 88]`, column j for MIDI note 21 + j.

Recommended import: `from seqlvm.data import load_pianoroll`.

#### References
[1] Boulanger-Lewandowski, Bengio, Vincent. Modeling Temporal Dependencies in
    High-Dimensional Sequences. ICML 2012. https://arxiv.org/abs/1206.6392
"""

import dataclasses
import numbers
import os
import pickle

import numpy as np

from seqlvm import fileio
from seqlvm import registry
from seqlvm.errors import DataError

__all__ = [
    "DataError",
    "Pianorolls",
    "load_pianoroll",
    "save_pianoroll",
    "notes_to_roll",
    "roll_to_notes",
    "LOWEST_NOTE",
    "HIGHEST_NOTE",
    "NUM_NOTES",
    "SPLITS",
]

LOWEST_NOTE = 21
HIGHEST_NOTE = 108
NUM_NOTES = HIGHEST_NOTE - LOWEST_NOTE + 1
SPLITS = registry.SPLITS


@dataclasses.dataclass(frozen=True)
class Pianorolls:
  """The three splits of a pianoroll set as binary arrays `[T, 88]`."""
  train: list
  valid: list
  test: list
  train_mean: np.ndarray  # [88], the mean of the training steps.
  path: str = ""

  def split(self, name):
    if name not in SPLITS:
      raise ValueError(f"Unknown split {name!r}; choose one of "
                       f"{', '.join(SPLITS)}.")
    return getattr(self, name)


def notes_to_roll(sequence):
  """A list of timesteps of MIDI notes -> binary float32 `[T, 88]`.

  Raises:
    ValueError: for a note that is not an integer in 21..108.
  """
  roll = np.zeros([len(sequence), NUM_NOTES], np.float32)
  for t, notes in enumerate(sequence):
    for note in notes:
      if (not isinstance(note, numbers.Integral) and not (
          isinstance(note, numbers.Real) and float(note).is_integer())):
        raise ValueError(f"timestep {t}: note {note!r} is not an integer "
                         "MIDI note number")
      note = int(note)
      if not LOWEST_NOTE <= note <= HIGHEST_NOTE:
        raise ValueError(f"timestep {t}: note {note} is outside "
                         f"{LOWEST_NOTE}..{HIGHEST_NOTE}")
      roll[t, note - LOWEST_NOTE] = 1.
  return roll


def roll_to_notes(roll):
  """Binary `[T, 88]` -> a list of timesteps, each a tuple of MIDI notes."""
  roll = np.asarray(roll)
  return [tuple(int(j) + LOWEST_NOTE for j in np.flatnonzero(step > 0.5))
          for step in roll]


def _read_pickle(path):
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file.")
  try:
    with open(path, "rb") as f:
      return pickle.load(f, encoding="latin1")
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
          AttributeError, ImportError, IndexError, OSError) as e:
    raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: "
                    f"{e}).") from e


def load_pianoroll(path):
  """Loads and checks a pianoroll pickle.

  Args:
    path: the pickle file.

  Returns:
    rolls: a `Pianorolls` with `.train`, `.valid`, `.test` (lists of binary
      float32 arrays `[T, 88]`) and `.train_mean` `[88]`.

  Raises:
    DataError: naming the file, for a missing file, a file that is not a
      pickle, a missing or empty split, or a note outside 21..108.
  """
  path = os.fspath(path)
  obj = _read_pickle(path)
  if not isinstance(obj, dict):
    raise DataError(f"{path}: expected a dict with keys 'train', 'valid', "
                    f"'test'; found a {type(obj).__name__}.")
  splits = {}
  for name in SPLITS:
    if name not in obj:
      raise DataError(f"{path}: split {name!r} is missing (keys found: "
                      f"{sorted(map(str, obj))}).")
    sequences = obj[name]
    if not isinstance(sequences, (list, tuple)):
      raise DataError(f"{path}: split {name!r} must be a list of sequences, "
                      f"found a {type(sequences).__name__}.")
    if not sequences:
      raise DataError(f"{path}: split {name!r} is empty.")
    rolls = []
    for i, sequence in enumerate(sequences):
      try:
        if not len(sequence):  # pylint: disable=g-explicit-length-test
          raise ValueError("it has no timesteps (every sequence needs at "
                           "least one; remove it)")
        rolls.append(notes_to_roll(sequence))
      except (ValueError, TypeError) as e:
        raise DataError(f"{path}: split {name!r}, sequence {i}: {e}.") from e
    splits[name] = rolls
  steps = sum(len(r) for r in splits["train"])
  if steps == 0:
    raise DataError(f"{path}: split 'train' has no timesteps.")
  train_mean = (np.sum([r.sum(0) for r in splits["train"]], axis=0) /
                steps).astype(np.float32)
  return Pianorolls(train_mean=train_mean, path=path, **splits)


def save_pianoroll(splits, path):
  """Writes {'train': [...], ...} of note lists as a pickle, atomically.

  Args:
    splits: dict of split name -> list of sequences of note tuples.
    path: where to write; the file appears whole or not at all.
  """
  with fileio.atomic_write(path, "wb") as f:
    pickle.dump({k: splits[k] for k in SPLITS}, f, protocol=4)
