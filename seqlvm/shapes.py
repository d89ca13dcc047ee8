"""Shape helpers shared by the SMC core, the models and the data pipeline.

Symbols: T = time, B = batch, N = particles, D = features.

Particles are folded into the batch in particle-major order: row `n * B + b`
of a `[N*B, ...]` tensor is particle `n` of sequence `b`. Fold and unfold only
through `merge_particles` and `split_particles`, so that every module agrees on
that order.

Recommended import: `from seqlvm import shapes`.
"""

import tensorflow as tf

__all__ = [
    "sequence_mask",
    "merge_particles",
    "split_particles",
    "tile_particles",
]


def sequence_mask(lengths, num_steps, name=None):
  """Time-major validity mask.

  Args:
    lengths: int `[B]`, the length of each sequence.
    num_steps: int scalar T, the padded length.
    name: optional op name.

  Returns:
    mask: bool `[T, B]`, True where a step is real.
  """
  with tf.name_scope(name or "sequence_mask"):
    return tf.transpose(tf.sequence_mask(lengths, num_steps))


def merge_particles(x):
  """Folds `[N, B, ...]` into `[N*B, ...]` (particle-major)."""
  shape = tf.shape(x)
  return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))


def split_particles(x, num_particles):
  """Unfolds `[N*B, ...]` into `[N, B, ...]`; inverse of `merge_particles`."""
  shape = tf.shape(x)
  return tf.reshape(
      x, tf.concat([[num_particles, shape[0] // num_particles], shape[1:]],
                   axis=0))


def tile_particles(x, num_particles):
  """Copies a per-sequence tensor `[B, ...]` to every particle: `[N*B, ...]`."""
  x = tf.convert_to_tensor(x)
  # A static multiples list: XLA needs it constant in while-loop gradients.
  return tf.tile(x, [num_particles] + [1] * (x.shape.rank - 1))
