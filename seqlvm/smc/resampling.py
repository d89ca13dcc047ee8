"""Resampling: which ancestor each particle takes, and how gradients see it.

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

Gradient estimators. The ancestor draw is discrete, so how a gradient treats
it is a choice (`get_gradient`, DESIGN.md section 2). An estimator has the
signature

    estimator(log_weights, seed, resample_fn) -> Resampled

and the sweep (`seqlvm.smc.filter`) applies what it returns: it gathers (or,
for `concrete`, mixes) the particles, sets the new log weights and, for
`score`, adds the score-function term to the gradient.

- "stop" (FIVO's default): no gradient through the draw; the new weights are
  uniform. The score-function term of the draw is dropped, so the gradient
  of E[log p_hat] is biased; its variance is as low as the pathwise gradient
  through the proposals allows.
- "score": the same draw and forward value, plus the score-function
  (REINFORCE) term sum_t (R_t - b_t) grad log P(a_t), where a_t are the
  ancestors drawn at step t, P their multinomial probability and R_t the
  part of log p_hat that comes after the draw. Unbiased for the gradient of
  E[log p_hat] (for a fixed resampling schedule: always, or never), with a
  variance that grows with the length of the sequence and the number of
  resampling steps. Needs multinomial resampling, whose P is a product of
  the normalised weights. The baseline b_t is explained in
  `seqlvm.smc.filter`.
- "soft" (Karkus, Hsu and Lee 2018): ancestors are drawn from the mixture
  q = a * softmax(w) + (1 - a) / N with mixing a, and the new weights are
  the importance corrections softmax(w)_k / q_k, through which gradients
  flow. Mixing 1 is "stop" exactly; mixing 0 draws ancestors uniformly
  (with the multinomial scheme: duplicating some particles and dropping
  others at random) and carries the old weights over. The gradient is still
  biased (the draw's own score term is missing), while the forward
  estimate's variance rises as a falls (non-uniform weights after
  resampling).
- "concrete" (Maddison, Mnih and Teh 2017; Jang, Gu and Poole 2017): each new
  particle is a Concrete (Gumbel-softmax) relaxation of a one-hot ancestor
  draw, r_n = softmax((log softmax(w) + g_n) / temperature) with Gumbel noise
  g_n, and its state is the mixture sum_k r_nk state_k of the parents' (float
  states; integer states take the hard ancestor argmax_k r_nk). Gradients
  flow through r. The new weights are uniform. The forward value is biased
  (particles are mixtures, not draws) and tends to that of hard Gumbel-max
  multinomial resampling with "stop" (`multinomial_gumbel`, same noise) as
  the temperature goes to 0, where the gradient's variance grows like
  1 / temperature.

Recommended import: `from seqlvm.smc import resampling`.

#### References
[1] Liu and Chen. Sequential Monte Carlo methods for dynamic systems. JASA
    1998 (residual resampling).
[2] Karkus, Hsu, Lee. Particle Filter Networks with Application to Visual
    Localization. CoRL 2018. https://arxiv.org/abs/1805.08975
[3] Maddison, Mnih, Teh. The Concrete Distribution. ICLR 2017.
    https://arxiv.org/abs/1611.00712
[4] Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax.
    ICLR 2017. https://arxiv.org/abs/1611.01144
[5] Maddison et al. Filtering Variational Objectives. NeurIPS 2017, section 4
    (the dropped score-function term). https://arxiv.org/abs/1705.09279
"""

import collections
import functools
import math

import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.smc import criteria

__all__ = [
    "multinomial",
    "systematic",
    "stratified",
    "residual",
    "multinomial_gumbel",
    "get",
    "SCHEMES",
    "Resampled",
    "stop",
    "score",
    "soft",
    "concrete",
    "get_gradient",
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


def _gumbel(log_weights, seed):
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

  The same distribution as `multinomial`, drawn from the same Gumbel noise as
  the `concrete` relaxation with that seed: `concrete`'s zero-temperature
  limit. Not offered on the command line (use "multinomial").

  Args:
    log_weights: float `[N, B]`.
    seed: stateless seed.

  Returns:
    ancestors: int32 `[N, B]`.
  """
  log_probs = criteria.log_normalize(tf.stop_gradient(log_weights))
  perturbed = log_probs[tf.newaxis] + _gumbel(log_weights, seed)
  return tf.argmax(perturbed, axis=1, output_type=tf.int32)


def _at_ancestors(values, ancestors):
  """values `[N, B]` taken at each new particle's ancestor: `[N, B]`."""
  return tf.transpose(tf.gather(tf.transpose(values), tf.transpose(ancestors),
                                batch_dims=1))


SCHEMES = {
    "multinomial": multinomial,
    "systematic": systematic,
    "stratified": stratified,
    "residual": residual,
}


def get(name):
  """Looks a resampling scheme up by name."""
  try:
    return SCHEMES[name]
  except KeyError:
    raise ValueError(f"Unknown resampling scheme {name!r}; choose one of "
                     f"{', '.join(SCHEMES)}.") from None


Resampled = collections.namedtuple(
    "Resampled",
    [
        "ancestors",  # int32 [N, B]: each new particle's (hard) ancestor.
        "mixing",  # float [N, N, B] or None: relaxed one-hot rows over the
                   # parents (concrete); None means gather by `ancestors`.
        "log_weights",  # float [N, B]: the log weights after resampling.
        "log_prob",  # float [B] or None: log P(ancestors), with gradient,
                     # for the score-function term.
    ])


def stop(log_weights, seed, resample_fn):
  """FIVO's rule: no gradient through the draw, uniform new weights."""
  ancestors = resample_fn(log_weights, seed)
  return Resampled(ancestors, None, tf.zeros_like(log_weights), None)


def score(log_weights, seed, resample_fn):
  """`stop`'s draw, plus log P(ancestors) for the score-function term.

  P is the multinomial probability of the drawn ancestor vector,
  prod_n softmax(w)_{a_n}, with its gradient; the caller must have drawn the
  ancestors multinomially.
  """
  ancestors = resample_fn(log_weights, seed)
  log_probs = criteria.log_normalize(log_weights)  # with gradient
  return Resampled(ancestors, None, tf.zeros_like(log_weights),
                   tf.reduce_sum(_at_ancestors(log_probs, ancestors), axis=0))


def soft(log_weights, seed, resample_fn, mixing=0.5):
  """Soft resampling: draw from a * softmax(w) + (1 - a) / N, reweight.

  The new weights softmax(w)_a / q_a carry gradients to the old weights.
  With mixing 1 the mixture is softmax(w) itself, the new weights are
  exactly 0 and so are their gradients: `stop`.
  """
  dtype = log_weights.dtype
  log_probs = criteria.log_normalize(log_weights)
  if float(mixing) == 1.:
    # Not the log-sum-exp below: its gradient at a zero-weight particle is
    # 0 * inf = NaN.
    log_mixture = log_probs
  else:
    n = tf.cast(tf.shape(log_weights)[0], dtype)
    mixing = tf.cast(mixing, dtype)
    log_mixture = tf.reduce_logsumexp(
        tf.stack([tf.math.log(mixing) + log_probs,
                  tf.math.log1p(-mixing) - tf.math.log(n) +
                  tf.zeros_like(log_probs)]), axis=0)
  ancestors = resample_fn(log_mixture, seed)
  correction = _at_ancestors(log_probs - log_mixture, ancestors)
  return Resampled(ancestors, None, correction, None)


def concrete(log_weights, seed, resample_fn, temperature=0.5):
  """Concrete relaxation of a multinomial ancestor draw.

  Row n of the mixing matrix is softmax((log softmax(w) + g_n) / temperature)
  over the parents, g_n Gumbel; the hard ancestors are its argmax (those of
  `multinomial_gumbel` with the same seed). `resample_fn` is not used: the
  relaxation is of the multinomial draw.
  """
  del resample_fn
  log_probs = criteria.log_normalize(log_weights)  # with gradient
  perturbed = log_probs[tf.newaxis] + _gumbel(log_weights, seed)
  scaled = perturbed / tf.cast(temperature, log_weights.dtype)
  # softmax over the parents, written out: tf.nn.softmax on a middle axis
  # transposes by a computed permutation, which XLA cannot compile in a
  # while-loop gradient.
  mixing = tf.exp(scaled - tf.reduce_logsumexp(scaled, axis=1, keepdims=True))
  ancestors = tf.argmax(tf.stop_gradient(perturbed), axis=1,
                        output_type=tf.int32)
  return Resampled(ancestors, mixing, tf.zeros_like(log_weights), None)


GRADIENTS = ("stop", "score", "soft", "concrete")
# The estimators whose draw must be multinomial.
MULTINOMIAL_ONLY = ("score", "concrete")


def get_gradient(name, scheme="multinomial", mixing=0.5, temperature=0.5):
  """An estimator by name, with its parameter bound.

  Args:
    name: one of `GRADIENTS`.
    scheme: the resampling scheme's name (checked: "score" and "concrete"
      need "multinomial").
    mixing: soft resampling's weight on softmax(w), in [0, 1]. Default
      value: 0.5.
    temperature: the Concrete relaxation's temperature, > 0. Default value:
      0.5.

  Returns:
    estimator: (log_weights, seed, resample_fn) -> `Resampled`, with a
      `name` attribute.

  Raises:
    ValueError: for an unknown name, a parameter out of range, or a scheme
      the estimator cannot use.
  """
  if name not in GRADIENTS:
    raise ValueError(f"Unknown resampling gradient {name!r}; choose one of "
                     f"{', '.join(GRADIENTS)}.")
  if name in MULTINOMIAL_ONLY and scheme != "multinomial":
    raise ValueError(
        f"The {name!r} resampling gradient needs the multinomial scheme "
        f"(got {scheme!r}): " +
        ("its score term is the log-probability of independent categorical "
         "draws." if name == "score" else
         "it relaxes independent categorical draws."))
  if name == "soft":
    if not 0. <= float(mixing) <= 1.:
      raise ValueError(f"Soft resampling's mixing must be in [0, 1], got "
                       f"{mixing}.")
    estimator = functools.partial(soft, mixing=float(mixing))
  elif name == "concrete":
    if not float(temperature) > 0. or math.isinf(float(temperature)):
      raise ValueError(f"The Concrete temperature must be positive and "
                       f"finite, got {temperature}.")
    estimator = functools.partial(concrete, temperature=float(temperature))
  else:
    estimator = functools.partial({"stop": stop, "score": score}[name])
  estimator.name = name
  return estimator
