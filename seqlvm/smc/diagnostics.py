"""What a particle filter did: effective sample sizes and resampling.

The FIVO paper ties the bound's tightness to the variance of log p_hat,
which resampling keeps in check by resetting the weights when the effective
sample size (ESS) collapses. These summaries of an `SMCResult` say how the
sweep behaved, per sequence, over its real (unpadded) steps:

    ess_mean_fraction   the mean ESS after each step's increment, over N
    ess_min_fraction    the smallest such ESS, over N
    resampling_rate     the fraction of steps at which the filter resampled

`batch_summary` weights them by the sequences' lengths (the minimum is the
minimum), as the training step's TensorBoard scalars report them.

Recommended import: `from seqlvm.smc import diagnostics`.
"""

import tensorflow as tf

__all__ = ["NAMES", "per_sequence", "batch_summary"]

NAMES = ("ess_mean_fraction", "ess_min_fraction", "resampling_rate")


def per_sequence(result, mask, num_particles):
  """The diagnostics of each sequence of one sweep.

  Args:
    result: the sweep's `seqlvm.smc.SMCResult` (ess and resampled `[T, B]`).
    mask: bool `[T, B]`, True where a step is real (None: all are).
    num_particles: N.

  Returns:
    a dict of float `[B]` tensors named by NAMES; a sequence without real
    steps gets 1, 1 and 0.
  """
  ess = tf.cast(result.ess, tf.float32) / float(num_particles)
  if mask is None:
    mask = tf.ones_like(result.resampled)
  mask = tf.cast(mask, tf.bool)
  real = tf.cast(mask, tf.float32)
  steps = tf.reduce_sum(real, axis=0)
  safe = tf.maximum(steps, 1.)
  mean = tf.where(steps > 0, tf.reduce_sum(ess * real, axis=0) / safe, 1.)
  smallest = tf.reduce_min(tf.where(mask, ess, tf.ones_like(ess)), axis=0)
  fired = tf.cast(tf.logical_and(result.resampled, mask), tf.float32)
  return {"ess_mean_fraction": mean, "ess_min_fraction": smallest,
          "resampling_rate": tf.reduce_sum(fired, axis=0) / safe}


def batch_summary(values, lengths):
  """One number per diagnostic for a batch: length-weighted means, and the
  minimum ESS over the sequences with real steps.

  Args:
    values: the dict of `per_sequence`.
    lengths: int `[B]`, the sequences' lengths.
  """
  weights = tf.cast(lengths, tf.float32)
  total = tf.maximum(tf.reduce_sum(weights), 1.)
  real = lengths > 0
  return {
      "ess_mean_fraction":
          tf.reduce_sum(values["ess_mean_fraction"] * weights) / total,
      "ess_min_fraction": tf.reduce_min(tf.where(
          real, values["ess_min_fraction"],
          tf.ones_like(values["ess_min_fraction"]))),
      "resampling_rate":
          tf.reduce_sum(values["resampling_rate"] * weights) / total,
  }
