"""Padding, masks and tf.data input for variable-length sequences.

Batches are time-major: x float32 `[T, B, D]` and lengths int32 `[B]`; the
mask is `seqlvm.shapes.sequence_mask(lengths, T)`. T is the longest length in
the batch, rounded up to a multiple of `pad_to_multiple` so that a compiled
(XLA) step sees few distinct shapes.
"""

import numpy as np
import tensorflow as tf

__all__ = ["pad_batch", "make_dataset", "num_batches"]


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


def num_batches(num_sequences, batch_size):
  return -(-num_sequences // batch_size)


def make_dataset(sequences, batch_size, shuffle=False, seed=0, repeat=False,
                 pad_to_multiple=1):
  """A tf.data pipeline of padded, time-major batches.

  Args:
    sequences: list of float arrays `[T_i, D]`.
    batch_size: int B.
    shuffle: reshuffle the sequences each epoch. Default value: False.
    seed: int, for the shuffle. Default value: 0.
    repeat: repeat forever (for training). Default value: False.
    pad_to_multiple: round T up to a multiple of this. Default value: 1.

  Returns:
    dataset: of (x float32 `[T, B, D]`, lengths int32 `[B]`).
  """
  if not sequences:
    raise ValueError("make_dataset: no sequences.")
  data_size = sequences[0].shape[1]
  lengths = np.array([len(s) for s in sequences], np.int32)
  ragged = tf.RaggedTensor.from_row_lengths(
      np.concatenate([np.asarray(s, np.float32) for s in sequences], axis=0),
      lengths)
  ds = tf.data.Dataset.from_tensor_slices((ragged, lengths))
  if shuffle:
    ds = ds.shuffle(len(sequences), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.map(lambda x, n: (x.to_tensor() if isinstance(x, tf.RaggedTensor)
                            else x, n))
  ds = ds.padded_batch(batch_size, padded_shapes=([None, data_size], []))

  def time_major(x, n):
    steps = tf.shape(x)[1]
    if pad_to_multiple > 1:
      target = -(-steps // pad_to_multiple) * pad_to_multiple
      x = tf.pad(x, [[0, 0], [0, target - steps], [0, 0]])
    return tf.transpose(x, [1, 0, 2]), n

  return ds.map(time_major).prefetch(tf.data.AUTOTUNE)
