"""The embedded default: Bach chorales from the corpus that music21 ships.

The PyPI package music21 carries about 410 Bach chorales as MusicXML files
(music21/corpus/bach/*.mxl and *.xml). Each is parsed with music21 and
sampled at every quarter note over MIDI notes 21..108 (a note sounds at step
t if it starts at or before beat t and ends after it), which gives a
JSB-Chorales-like set on any machine with no download.

The split is deterministic: files sorted by name, file i goes to 'valid' if
i % 5 == 3, to 'test' if i % 5 == 4, else to 'train' (60/20/20, like JSB).
The prepared pickle is cached in the data directory (`data_dir()`), written
atomically, and reused on later runs.
"""

import math
import multiprocessing
import os
import sys

from seqlvm.data.formats import pianoroll

__all__ = ["prepare_chorales", "chorale_files", "data_dir", "CACHE_NAME"]

CACHE_NAME = "chorales.pkl"


def data_dir():
  """$SEQLVM_DATA_DIR, else $XDG_CACHE_HOME/seqlvm, else ~/.cache/seqlvm."""
  if os.environ.get("SEQLVM_DATA_DIR"):
    return os.environ["SEQLVM_DATA_DIR"]
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "seqlvm")


def chorale_files():
  """The MusicXML chorale files in music21's corpus, sorted by name."""
  import music21  # pylint: disable=g-import-not-at-top
  folder = os.path.join(os.path.dirname(music21.__file__), "corpus", "bach")
  if not os.path.isdir(folder):
    raise pianoroll.DataError(
        f"{folder}: music21's Bach corpus is missing; reinstall music21 "
        "(pip install --force-reinstall music21).")
  return sorted(
      os.path.join(folder, f) for f in os.listdir(folder)
      if f.endswith((".mxl", ".xml")))


def parse_chorale(path):
  """One MusicXML file -> a list of timesteps (tuples of MIDI notes)."""
  import music21  # pylint: disable=g-import-not-at-top
  score = music21.converter.parse(path)
  num_steps = int(math.ceil(float(score.highestTime)))
  steps = [set() for _ in range(num_steps)]
  for element in score.flatten().notes:
    start = float(element.offset)
    end = start + float(element.duration.quarterLength)
    first = int(math.ceil(start))
    for t in range(first, min(int(math.ceil(end)), num_steps)):
      for pitch in element.pitches:
        if pianoroll.LOWEST_NOTE <= pitch.midi <= pianoroll.HIGHEST_NOTE:
          steps[t].add(int(pitch.midi))
  # Drop silent steps at the very end (pickup-bar padding).
  while steps and not steps[-1]:
    steps.pop()
  return [tuple(sorted(s)) for s in steps]


def _split_of(i):
  return {3: "valid", 4: "test"}.get(i % 5, "train")


def prepare_chorales(directory=None, limit=None, processes=None,
                     progress=True, force=False):
  """Prepares (once) and returns the path of the chorales pickle.

  Args:
    directory: where to cache it. Default value: `data_dir()`.
    limit: use only the first `limit` files (for tests). A limited set is
      cached under its own name.
    processes: parallel parsers. Default value: the CPU count.
    progress: print progress to stderr. Default value: True.
    force: prepare again even if cached. Default value: False.

  Returns:
    path: the pickle, in the format of `seqlvm.data.load_pianoroll`.
  """
  directory = directory or data_dir()
  name = CACHE_NAME if limit is None else f"chorales-first{limit}.pkl"
  path = os.path.join(directory, name)
  if os.path.exists(path) and not force:
    return path
  files = chorale_files()[:limit]
  if progress:
    print(f"Preparing {len(files)} Bach chorales from music21's corpus into "
          f"{path} (once; later runs reuse it)...", file=sys.stderr)
  processes = processes or os.cpu_count() or 1
  if processes > 1 and len(files) > 8:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
      sequences = pool.map(parse_chorale, files, chunksize=4)
  else:
    sequences = [parse_chorale(f) for f in files]
  splits = {s: [] for s in pianoroll.SPLITS}
  for i, sequence in enumerate(sequences):
    if sequence:
      splits[_split_of(i)].append(sequence)
  pianoroll.save_pianoroll(splits, path)
  if progress:
    print("  " + ", ".join(f"{k}: {len(v)}" for k, v in splits.items()) +
          " sequences", file=sys.stderr)
  return path
