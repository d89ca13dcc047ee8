"""Resampling schemes: which ancestor each particle takes.

Schemes. Every scheme has the signature

    resample_fn(log_weights, seed) -> ancestors

with `log_weights` float `[N, B]` (unnormalised) and `ancestors` int32 `[N, B]`:
particle n of filter b takes the state of particle `ancestors[n, b]`.
Multinomial, systematic and stratified resampling are TensorFlow
Probability's (`tfp.experimental.mcmc.resample_*`), which are stateless and
compile under XLA. They need a static batch shape in graph mode; under a
`tf.function` traced with an unknown batch size an equivalent inverse-CDF
implementation is used instead. TFP has no residual resampling, so
`residual` is written here (Liu and Chen 1998): particle k first gets
floor(N p_k) offspring, and the remaining R = N - sum floor(N p_k) are drawn
multinomially from the residuals N p_k - floor(N p_k). Every scheme gives
particle k N p_k offspring on average; systematic, stratified and residual
do so with lower variance than multinomial (tested).

The gradient estimators, which decide how gradients see the draw, are in
`seqlvm.smc.gradients`; the names users type are in
`seqlvm.registry.SCHEMES`.

Recommended import: `from seqlvm.smc import resampling`.

#### References
[1] Liu and Chen. Sequential Monte Carlo methods for dynamic systems. JASA
    1998 (residual resampling).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.smc import criteria

__all__ = ["multinomial", "systematic", "stratified", "residual",
           "multinomial_gumbel", "gumbel_noise"]


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
# Declared by the schemes whose ancestors are independent draws from
# softmax(w): what the score-function estimator's log P(a) assumes.
multinomial.independent_draws = True


def _count_below(cdf, points):
  """For cdf `[B, K]` and points `[B, M]`: #{k : cdf_k <= point_m}, `[B, M]`.

  A comparison and a sum rather than `tf.searchsorted`, so that it compiles
  under XLA at any batch shape (N is small: O(N^2) per filter is cheap).
  """
  below = cdf[:, tf.newaxis, :] <= points[:, :, tf.newaxis]
  return tf.reduce_sum(tf.cast(below, tf.int32), axis=-1)


def residual(log_weights, seed):
  """Residual resampling: floor(N p_k) copies of particle k, the rest drawn.

  Particle k first gets floor(N p_k) offspring; the remaining
  R = N - sum_k floor(N p_k) ancestors are independent draws from the
  residual weights N p_k - floor(N p_k) (which sum to R). The offspring
  counts have mean N p_k, like multinomial's, and a variance at most
  multinomial's (only R < N of the draws are random).

  Args:
    log_weights: float `[N, B]`, unnormalised.
    seed: stateless seed.

  Returns:
    ancestors: int32 `[N, B]`.
  """
  log_probs = criteria.log_normalize(tf.stop_gradient(log_weights))
  probs = tf.transpose(tf.exp(log_probs))  # [B, N]
  n = tf.shape(probs)[-1]
  n_float = tf.cast(n, probs.dtype)
  scaled = n_float * probs
  copies = tf.floor(scaled)
  residuals = scaled - copies  # sums to R per filter
  num_copies = tf.cast(tf.reduce_sum(copies, axis=-1, keepdims=True),
                       tf.int32)  # [B, 1]
  positions = tf.range(n)[tf.newaxis]  # [1, N]
  # Position j < D takes the k whose copies cover it.
  deterministic = _count_below(
      tf.cumsum(copies, axis=-1),
      tf.cast(positions, probs.dtype) + tf.zeros_like(probs))
  residual_cdf = tf.cumsum(residuals, axis=-1)
  points = tf.random.stateless_uniform(
      tf.shape(probs), seed, dtype=probs.dtype) * residual_cdf[:, -1:]
  drawn = _count_below(residual_cdf, points)
  ancestors = tf.where(positions < num_copies, deterministic, drawn)
  return tf.transpose(tf.minimum(ancestors, n - 1))


def gumbel_noise(log_weights, seed):
  """Gumbel noise `[N_new, N_old, B]`: one row per new particle."""
  n = tf.shape(log_weights)[0]
  shape = tf.concat([[n], tf.shape(log_weights)], axis=0)
  tiny = tf.constant(tf.experimental.numpy.finfo(
      log_weights.dtype.as_numpy_dtype).tiny, log_weights.dtype)
  uniform = tf.random.stateless_uniform(shape, seed, minval=tiny, maxval=1.,
                                        dtype=log_weights.dtype)
  return -tf.math.log(-tf.math.log(uniform))


def multinomial_gumbel(log_weights, seed):
  """Multinomial resampling by the Gumbel-max trick.

  The same distribution as `multinomial`, drawn from the same Gumbel noise
  as the `gradients.Concrete` relaxation with that seed: its zero-temperature
  limit. Not offered on the command line (use "multinomial").

  Args:
    log_weights: float `[N, B]`.
    seed: stateless seed.

  Returns:
    ancestors: int32 `[N, B]`.
  """
  log_probs = criteria.log_normalize(tf.stop_gradient(log_weights))
  perturbed = log_probs[tf.newaxis] + gumbel_noise(log_weights, seed)
  return tf.argmax(perturbed, axis=1, output_type=tf.int32)


multinomial_gumbel.independent_draws = True
