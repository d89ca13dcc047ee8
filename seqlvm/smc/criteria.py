"""When to resample: never (IWAE), always, or when the ESS falls below a threshold.

A criterion maps the current log weights `[N, B]` to a bool `[B]` saying which
filters resample at this step. The sweep additionally never resamples a filter
whose sequence has ended (see `seqlvm.smc.filter`).

Recommended import: `from seqlvm.smc import criteria`.
"""

import math

import tensorflow as tf

__all__ = [
    "never",
    "always",
    "ess_below_threshold",
    "effective_sample_size",
    "log_normalize",
    "get",
    "NAMES",
]


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


def never(log_weights):
  """Never resample (importance sampling: the IWAE bound)."""
  return tf.zeros(tf.shape(log_weights)[1:], tf.bool)


# The sweep skips the resampling code entirely for this criterion.
never.never_fires = True


def always(log_weights):
  """Resample at every step (bootstrap-style SMC)."""
  return tf.ones(tf.shape(log_weights)[1:], tf.bool)


def ess_below_threshold(threshold=0.5):
  """Resample when ESS < threshold * N (the FIVO default, threshold 0.5).

  Args:
    threshold: float in (0, 1]. Default value: 0.5.

  Returns:
    resample_criterion_fn: log_weights `[N, B]` -> bool `[B]`.

  Raises:
    ValueError: if threshold is outside (0, 1].
  """
  if not 0. < threshold <= 1.:
    raise ValueError(
        f"ESS threshold must be in (0, 1], got {threshold}: it is the fraction "
        "of the particle count below which the filter resamples.")

  def resample_criterion_fn(log_weights):
    # Compared in log space: log ESS < log(threshold * N).
    num_particles = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return _log_ess(log_weights) < (math.log(threshold) +
                                    tf.math.log(num_particles))

  resample_criterion_fn.threshold = threshold
  return resample_criterion_fn


NAMES = ("never", "always", "ess")


def get(name, threshold=0.5):
  """Looks a criterion up by its command-line name: never, always or ess."""
  if name == "never":
    return never
  if name == "always":
    return always
  if name == "ess":
    return ess_below_threshold(threshold)
  raise ValueError(f"Unknown resampling criterion {name!r}; choose one of "
                   f"{', '.join(NAMES)}.")
