"""Sources: bucketed training batches, chunking, whole-sequence evaluation."""

import numpy as np
import pytest

from seqlvm import data
from seqlvm.data import sources


def _sequences(lengths, data_size=3, seed=0):
  rng = np.random.RandomState(seed)
  return [rng.rand(n, data_size).astype(np.float32) for n in lengths]


def test_bucket_boundaries_are_multiples_plus_one():
  assert sources.bucket_boundaries(100, 32) == [33, 65, 97]
  assert sources.bucket_boundaries(20, 32) == []
  # At most 16 buckets, each a multiple of 32 wide.
  b = sources.bucket_boundaries(4273, 32)
  assert len(b) + 1 <= 16 and all((x - 1) % 32 == 0 for x in b)


def test_chunk_sequences_keeps_every_step_in_order():
  seqs = _sequences([10, 3, 7])
  pieces = sources.chunk_sequences(seqs, 4)
  assert [len(p) for p in pieces] == [4, 4, 2, 3, 4, 3]
  np.testing.assert_array_equal(np.concatenate(pieces),
                                np.concatenate(seqs))
  assert sources.chunk_sequences(seqs, 0) == seqs


def test_training_batches_are_static_bucketed_and_chunked():
  lengths = [5, 40, 41, 70, 12, 33, 100, 64, 9, 2]
  src = data.InMemorySource({"train": _sequences(lengths)})
  ds = src.train_dataset(batch_size=2, seed=1, pad_to_multiple=16,
                         max_length=50)
  seen = []
  for x, n in ds.take(40):
    assert x.shape[1] == 2 and x.shape[2] == 3
    assert x.shape[0] % 16 == 0 and max(n) <= x.shape[0] <= 64
    assert max(n) <= 50  # chunked
    for b in range(2):  # padding is zero
      assert not np.any(x[n[b]:, b].numpy())
    seen += list(n.numpy())
  pieces = sorted(len(p) for p in sources.chunk_sequences(
      _sequences(lengths), 50))
  assert set(seen) == set(pieces)


def test_evaluation_covers_each_sequence_once_with_static_batches():
  seqs = _sequences([5, 40, 41, 70, 12, 33, 100])
  src = data.InMemorySource({"train": seqs, "test": seqs})
  found = {}
  for x, n, index in src.eval_dataset("test", batch_size=3,
                                      pad_to_multiple=8):
    assert x.shape[1] == 3 and x.shape[0] % 8 == 0
    real = index.numpy() >= 0
    assert not np.any(n.numpy()[~real])  # fillers are empty
    for b in np.flatnonzero(real):
      found[int(index[b])] = x[:n[b], b].numpy()
  # Each sequence once, and its index is its position in the split.
  assert sorted(found) == list(range(len(seqs)))
  for i, sequence in enumerate(seqs):
    np.testing.assert_array_equal(found[i], sequence)


def test_wrapping_objects_with_lists_and_empty_splits():
  class Lists:
    train = _sequences([4, 6])
    valid = []

  src = data.as_source(Lists())
  assert src.num_sequences("valid") == 0 and src.num_timesteps("train") == 10
  with pytest.raises(data.DataError, match="'valid' split is empty"):
    src.eval_dataset("valid", 2)
  with pytest.raises(data.DataError, match="training split is empty"):
    data.InMemorySource({"train": []}, name="x.pkl")
