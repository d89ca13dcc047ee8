"""Padding variable-length sequences into one time-major numpy batch.

x float32 `[T, B, D]` and lengths int32 `[B]`; the mask is
`seqlvm.shapes.sequence_mask(lengths, T)`. T is the longest length in the
batch, rounded up to a multiple of `pad_to_multiple`. The runtime input
pipeline (tf.data, bucketed by length) is `seqlvm.data.sources`.
"""

import numpy as np

__all__ = ["pad_batch"]


def _round_up(n, multiple):
  return int(-(-n // multiple) * multiple) if multiple > 1 else int(n)


def pad_batch(sequences, pad_to_multiple=1):
  """Stacks sequences `[T_i, D]` into x `[T, B, D]` and lengths `[B]`."""
  lengths = np.array([len(s) for s in sequences], np.int32)
  num_steps = _round_up(max(lengths.max(initial=0), 1), pad_to_multiple)
  data_size = sequences[0].shape[1]
  x = np.zeros([num_steps, len(sequences), data_size], np.float32)
  for b, s in enumerate(sequences):
    x[:len(s), b] = s
  return x, lengths
