"""When to resample: never (IWAE), always, or when the ESS falls below a threshold.

A criterion maps the current log weights `[N, B]` to a bool `[B]` saying which
filters resample at this step. The sweep additionally never resamples a filter
whose sequence has ended (see `seqlvm.smc.filter`).

The names users type are in `seqlvm.registry.CRITERIA`.

Recommended import: `from seqlvm.smc import criteria`.
"""

import math

import tensorflow as tf

__all__ = ["ResampleCriterion", "Never", "Always", "EssBelowThreshold",
           "never", "always", "ess_below_threshold", "effective_sample_size",
           "log_normalize"]


def log_normalize(log_weights):
  """log softmax over the particle axis 0 of `[N, B]`.

  Written as w - logsumexp(w) rather than `tf.math.log_softmax(axis=0)`,
  whose transposes with computed permutations XLA cannot compile in a
  while-loop gradient.
  """
  return log_weights - tf.reduce_logsumexp(log_weights, axis=0, keepdims=True)


def _log_ess(log_weights):
  log_normalized = log_normalize(tf.stop_gradient(log_weights))
  return -tf.reduce_logsumexp(2. * log_normalized, axis=0)


def effective_sample_size(log_weights):
  """ESS = 1 / sum_n softmax(w)_n^2 per filter (no gradient).

  Args:
    log_weights: float `[N, B]`.

  Returns:
    ess: float `[B]`, in [1, N].
  """
  return tf.exp(_log_ess(log_weights))


class ResampleCriterion:
  """The protocol of a criterion: log_weights `[N, B]` -> bool `[B]`.

  Any callable with that signature serves as `resample_criterion_fn` (as in
  TFP). A criterion whose `can_fire` is False never resamples: the sweep
  then leaves the resampling code out of its graph altogether.
  """

  can_fire = True

  def __call__(self, log_weights):
    raise NotImplementedError

  def __repr__(self):
    return f"{type(self).__name__}()"


class Never(ResampleCriterion):
  """Never resample (importance sampling: the IWAE bound)."""

  can_fire = False

  def __call__(self, log_weights):
    return tf.zeros(tf.shape(log_weights)[1:], tf.bool)


class Always(ResampleCriterion):
  """Resample at every step (bootstrap-style SMC)."""

  def __call__(self, log_weights):
    return tf.ones(tf.shape(log_weights)[1:], tf.bool)


class EssBelowThreshold(ResampleCriterion):
  """Resample when ESS < threshold * N (the FIVO default, threshold 0.5).

  Args:
    threshold: float in (0, 1]. Default value: 0.5.

  Raises:
    ValueError: if threshold is outside (0, 1].
  """

  def __init__(self, threshold=0.5):
    if not 0. < threshold <= 1.:
      raise ValueError(
          f"ESS threshold must be in (0, 1], got {threshold}: it is the "
          "fraction of the particle count below which the filter resamples.")
    self.threshold = threshold

  def __call__(self, log_weights):
    # Compared in log space: log ESS < log(threshold * N).
    num_particles = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return _log_ess(log_weights) < (math.log(self.threshold) +
                                    tf.math.log(num_particles))

  def __repr__(self):
    return f"EssBelowThreshold({self.threshold})"


never = Never()
always = Always()


def ess_below_threshold(threshold=0.5):
  """`EssBelowThreshold(threshold)`: resample when ESS < threshold * N."""
  return EssBelowThreshold(threshold)
