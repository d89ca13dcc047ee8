"""Resampling schemes: which ancestor each particle takes.

Every scheme has the signature

    resample_fn(log_weights, seed) -> ancestors

with `log_weights` float `[N, B]` (unnormalised) and `ancestors` int32 `[N, B]`:
particle n of filter b takes the state of particle `ancestors[n, b]`. The
schemes are TensorFlow Probability's (`tfp.experimental.mcmc.resample_*`),
which are stateless and compile under XLA. They need a static batch
shape in graph mode; under a `tf.function` traced with an unknown batch size
an equivalent inverse-CDF implementation is used instead.

Gradients: the ancestor indices are integers, so no gradient flows through the
draw. This is the FIVO default ("stop"): it drops the score-function term of
the ancestor draw, a biased but low-variance gradient (Maddison et al. 2017,
section 4). The weights fed to the scheme are wrapped in `tf.stop_gradient`
to make that explicit.

Recommended import: `from seqlvm.smc import resampling`.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.smc import criteria

__all__ = [
    "multinomial",
    "systematic",
    "stratified",
    "get",
    "SCHEMES",
    "GRADIENTS",
]


def _inverse_cdf(log_probs, kind, seed):
  """The same three schemes for shapes only known at run time.

  TFP's resamplers need a static batch shape in graph mode; this inverse-CDF
  version (searchsorted on the cumulative weights) serves a `tf.function`
  traced with an unknown batch size.
  """
  probs = tf.transpose(tf.exp(log_probs))  # [B, N]
  cdf = tf.math.cumsum(probs, axis=-1)
  shape = tf.shape(probs)
  n = tf.cast(shape[-1], probs.dtype)
  offsets = tf.range(n, dtype=probs.dtype)
  if kind == "multinomial":
    points = tf.random.stateless_uniform(shape, seed, dtype=probs.dtype)
  elif kind == "stratified":
    points = (offsets + tf.random.stateless_uniform(
        shape, seed, dtype=probs.dtype)) / n
  else:  # systematic
    points = (offsets + tf.random.stateless_uniform(
        [shape[0], 1], seed, dtype=probs.dtype)) / n
  points = points * cdf[:, -1:]
  ancestors = tf.searchsorted(cdf, points, side="right")
  return tf.transpose(tf.minimum(ancestors, shape[-1] - 1))


def _wrap(tfp_resampler, kind):

  def resample_fn(log_weights, seed):
    log_probs = criteria.log_normalize(tf.stop_gradient(log_weights))
    if not log_weights.shape.is_fully_defined():
      return tf.cast(_inverse_cdf(log_probs, kind, seed), tf.int32)
    ancestors = tfp_resampler(log_probs, log_weights.shape[0],
                              tf.zeros([0], tf.int32), seed=seed)
    return tf.cast(ancestors, tf.int32)

  resample_fn.__name__ = tfp_resampler.__name__
  return resample_fn


multinomial = _wrap(tfp.experimental.mcmc.resample_independent,
                    "multinomial")
multinomial.__doc__ = "Independent categorical draws (multinomial resampling)."
systematic = _wrap(tfp.experimental.mcmc.resample_systematic, "systematic")
systematic.__doc__ = "Systematic resampling: one uniform offset for all draws."
stratified = _wrap(tfp.experimental.mcmc.resample_stratified, "stratified")
stratified.__doc__ = "Stratified resampling: one uniform per stratum."

SCHEMES = {
    "multinomial": multinomial,
    "systematic": systematic,
    "stratified": stratified,
}

# Gradient estimators for the ancestor draw. Only the FIVO default exists so
# far; the others of DESIGN.md section 2 are registered here when they land.
GRADIENTS = ("stop",)


def get(name):
  """Looks a resampling scheme up by name."""
  try:
    return SCHEMES[name]
  except KeyError:
    raise ValueError(f"Unknown resampling scheme {name!r}; choose one of "
                     f"{', '.join(SCHEMES)}.") from None
