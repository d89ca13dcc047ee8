"""Masks and particle folding."""

import numpy as np
import tensorflow as tf

from seqlvm import shapes


def test_sequence_mask_is_time_major_and_true_where_real():
  mask = shapes.sequence_mask([3, 1, 0], 4).numpy()
  assert mask.shape == (4, 3) and mask.dtype == bool
  np.testing.assert_array_equal(mask.sum(axis=0), [3, 1, 0])
  assert mask[:3, 0].all() and not mask[3, 0]


def test_particles_fold_particle_major_and_back():
  x = tf.reshape(tf.range(3 * 2 * 4), [3, 2, 4])  # [N=3, B=2, D=4]
  merged = shapes.merge_particles(x)
  assert merged.shape == (6, 4)
  # Row n*B + b is particle n of sequence b.
  np.testing.assert_array_equal(merged[1 * 2 + 1], x[1, 1])
  np.testing.assert_array_equal(shapes.split_particles(merged, 3), x)
  tiled = shapes.tile_particles(tf.constant([[1., 2.], [3., 4.]]), 3)
  np.testing.assert_array_equal(tiled, [[1, 2], [3, 4]] * 3)
