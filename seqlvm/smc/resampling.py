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


def _log_points(log_probs, kind, seed):
  """TFP's points for `kind`, `[B, N]`, drawn as its resamplers draw them."""
  dtype = log_probs.dtype
  shape = tf.shape(log_probs)  # [B, N]
  n = log_probs.shape[-1]
  if kind == "multinomial":
    return -tfp.distributions.Exponential(tf.constant(1., dtype)).sample(
        shape, seed=seed)
  width = tf.constant(1. / n, dtype)
  if kind == "systematic":
    offsets = tfp.distributions.Uniform(tf.constant(0., dtype), width).sample(
        shape[:1], seed=seed)[:, tf.newaxis]
  else:  # stratified
    offsets = tfp.distributions.Uniform(tf.constant(0., dtype), width).sample(
        shape, seed=seed)
  spacing = tf.linspace(tf.constant(0., dtype), 1. - width, n) + offsets
  return tf.broadcast_to(tf.math.log(spacing), shape)


def _dynamic_batch(log_probs, kind, seed):
  """TFP's resamplers for a batch size only known at run time.

  TFP's `_resample_using_log_points` needs a static batch shape in graph
  mode; this is the same algorithm on `[B, N]` with B dynamic, fed the
  same points, so a `tf.function` traced with an unknown batch size draws
  exactly the ancestors of the static-shape path for the same seed.
  """
  log_probs = tf.transpose(log_probs)  # [B, N]
  n = log_probs.shape[-1]
  log_points = _log_points(log_probs, kind, seed)
  # Sort N markers (the cumulative log weights) and N points together; a
  # point's ancestor is the number of markers before it (stable sort: no
  # point lands inside a zero-width bucket).
  markers = tf.concat([tf.ones_like(log_probs, tf.int32),
                       tf.zeros_like(log_points, tf.int32)], axis=-1)
  keys = tf.concat([tf.math.cumulative_logsumexp(log_probs, axis=-1),
                    log_points], axis=-1)  # [B, 2N]
  order = tf.argsort(keys, axis=-1, stable=True)
  sorted_markers = tf.gather(markers, order, batch_dims=1)
  counts = tf.minimum(tf.cumsum(sorted_markers, axis=-1), n - 1)
  point_positions = tf.argsort(tf.cast(tf.equal(sorted_markers, 0),
                                       tf.int32),
                               direction="DESCENDING", stable=True)[:, :n]
  return tf.transpose(tf.gather(counts, point_positions, batch_dims=1))


def _wrap(tfp_resampler, kind):

  def resample_fn(log_weights, seed):
    log_probs = criteria.log_normalize(tf.stop_gradient(log_weights))
    if not log_weights.shape.is_fully_defined():
      return tf.cast(_dynamic_batch(log_probs, kind, seed), tf.int32)
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
