"""The embedded default: chorales parsed from music21's corpus."""

import numpy as np

from seqlvm import data
from seqlvm.data.prepare import chorales


def test_corpus_is_there():
  files = chorales.chorale_files()
  assert len(files) > 400
  assert files == sorted(files)


def test_prepare_a_few_chorales(tmp_path):
  path = chorales.prepare_chorales(directory=str(tmp_path), limit=10,
                                   progress=False)
  rolls = data.load_pianoroll(path)
  assert (len(rolls.train), len(rolls.valid), len(rolls.test)) == (6, 2, 2)
  steps = np.concatenate(rolls.train)
  # Four-part chorales: mostly four notes sound at each quarter note.
  counts = steps.sum(1)
  assert np.median(counts) == 4 and counts.max() <= 6
  assert 25 < np.mean([len(r) for r in rolls.train]) < 120
  # Cached: the second call reuses the file.
  mtime = (tmp_path / "chorales-first10.pkl").stat().st_mtime_ns
  assert chorales.prepare_chorales(directory=str(tmp_path), limit=10,
                                   progress=False) == path
  assert (tmp_path / "chorales-first10.pkl").stat().st_mtime_ns == mtime
