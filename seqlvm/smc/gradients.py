"""Gradient estimators for the ancestor draw, each a `ResamplingGradient`.

The ancestor draw is discrete, so how a gradient treats it is a choice
(DESIGN.md section 2). An estimator is an object with the protocol

    resample(log_weights, seed, resample_fn) -> Resampled
    initial_extra(mask, dtype) -> extra          # a nest, () if none
    update_extra(extra, resampled, fire, mask_t, log_p_hat) -> extra
    finalize(log_p_hat, extra) -> log_p_hat

The sweep (`seqlvm.smc.filter`) applies what `resample` returns: it gathers
(or, where `mixing` is given, mixes) the particles and sets the new log
weights. It carries `extra` through its loop without looking inside, calls
`update_extra` after every step that may resample and `finalize` on the
bound at the end: this is where the score-function estimator keeps its
running sums and adds its term. A new estimator is a new subclass; the
sweep needs no edit (as TFP's `extra` field of its SMC kernel, or the
`loop_fn` of FIVO's reference `smc.py`).

The estimators registered for the command line (`seqlvm.registry.GRADIENTS`):

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

The pairing of an estimator with a scheme ("score" and "concrete" need
multinomial draws) is checked where names become objects
(`seqlvm.registry.gradient_scheme_problem`, used by `seqlvm.bounds`).

Recommended import: `from seqlvm.smc import gradients`.

#### References
[1] Karkus, Hsu, Lee. Particle Filter Networks with Application to Visual
    Localization. CoRL 2018. https://arxiv.org/abs/1805.08975
[2] Maddison, Mnih, Teh. The Concrete Distribution. ICLR 2017.
    https://arxiv.org/abs/1611.00712
[3] Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax.
    ICLR 2017. https://arxiv.org/abs/1611.01144
[4] Maddison et al. Filtering Variational Objectives. NeurIPS 2017, section 4
    (the dropped score-function term). https://arxiv.org/abs/1705.09279
"""

import collections
import math

import tensorflow as tf

from seqlvm.smc import criteria
from seqlvm.smc import resampling

__all__ = ["ResamplingGradient", "Resampled", "Stop", "Score", "Soft",
           "Concrete", "SCORE_BASELINES"]

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

SCORE_BASELINES = ("running_mean", "none")


def _at_ancestors(values, ancestors):
  """values `[N, B]` taken at each new particle's ancestor: `[N, B]`."""
  return tf.transpose(tf.gather(tf.transpose(values), tf.transpose(ancestors),
                                batch_dims=1))


class ResamplingGradient:
  """The protocol of a gradient estimator; the base carries no extra state.

  Subclasses implement `resample`; one that needs state across the sweep's
  steps overrides `initial_extra`, `update_extra` and `finalize`.
  """

  name = None
  # True: the estimator needs a scheme that declares `independent_draws`.
  needs_independent_draws = False

  def resample(self, log_weights, seed, resample_fn):
    """Draws ancestors for log_weights `[N, B]`: a `Resampled`."""
    raise NotImplementedError

  def initial_extra(self, mask, dtype):
    """The carried state before the first step, from mask bool `[T, B]`."""
    del mask, dtype
    return ()

  def update_extra(self, extra, resampled, fire, mask_t, log_p_hat):
    """The carried state after a step.

    Args:
      extra: the state before the step.
      resampled: this step's `Resampled`.
      fire: bool `[B]`, where the filter resampled.
      mask_t: bool `[B]`, where the step is real.
      log_p_hat: float `[B]`, log p_hat including this step's increment.
    """
    del resampled, fire, mask_t, log_p_hat
    return extra

  def finalize(self, log_p_hat, extra):
    """The bound `[B]` the sweep returns, from its log p_hat `[B]`."""
    del extra
    return log_p_hat

  def __repr__(self):
    return f"{type(self).__name__}()"


class Stop(ResamplingGradient):
  """FIVO's rule: no gradient through the draw, uniform new weights."""

  name = "stop"

  def resample(self, log_weights, seed, resample_fn):
    ancestors = resample_fn(log_weights, seed)
    return Resampled(ancestors, None, tf.zeros_like(log_weights), None)


class Score(ResamplingGradient):
  """`Stop`'s draw and value, plus the score-function term of the draw.

  P is the multinomial probability of the drawn ancestor vector,
  prod_n softmax(w)_{a_n}, with its gradient: the ancestors must be drawn
  multinomially. The baseline is explained in `seqlvm.smc.filter`.

  Args:
    baseline: "running_mean" or "none". Default value: "running_mean".
  """

  name = "score"
  needs_independent_draws = True

  def __init__(self, baseline="running_mean"):
    if baseline not in SCORE_BASELINES:
      raise ValueError(f"score_baseline must be 'running_mean' or 'none', "
                       f"got {baseline!r}.")
    self.baseline = baseline

  def resample(self, log_weights, seed, resample_fn):
    ancestors = resample_fn(log_weights, seed)
    log_probs = criteria.log_normalize(log_weights)  # with gradient
    return Resampled(ancestors, None, tf.zeros_like(log_weights),
                     tf.reduce_sum(_at_ancestors(log_probs, ancestors),
                                   axis=0))

  def initial_extra(self, mask, dtype):
    # (real steps per sequence, real steps so far, sum of log P(a),
    # sum of stop_gradient(L_t + b_t) log P(a)), all [B].
    total_steps = tf.reduce_sum(tf.cast(mask, dtype), axis=0)
    zeros = tf.zeros_like(total_steps)
    return (total_steps, zeros, zeros, zeros)

  def update_extra(self, extra, resampled, fire, mask_t, log_p_hat):
    total_steps, steps, log_prob_sum, weighted_sum = extra
    dtype = log_p_hat.dtype
    steps = steps + tf.cast(mask_t, dtype)
    log_prob = tf.where(fire, tf.cast(resampled.log_prob, dtype),
                        tf.zeros_like(log_p_hat))
    offset = tf.stop_gradient(log_p_hat)  # L_t
    if self.baseline == "running_mean":
      offset += (tf.stop_gradient(log_p_hat) / tf.maximum(steps, 1.) *
                 (total_steps - steps))
    return (total_steps, steps, log_prob_sum + log_prob,
            weighted_sum + offset * log_prob)

  def finalize(self, log_p_hat, extra):
    # sum_t (L_T - L_t - b_t) log P(a_t): value 0, gradient the score term.
    _, _, log_prob_sum, weighted_sum = extra
    surrogate = tf.stop_gradient(log_p_hat) * log_prob_sum - weighted_sum
    return log_p_hat + (surrogate - tf.stop_gradient(surrogate))

  def __repr__(self):
    return f"Score(baseline={self.baseline!r})"


class Soft(ResamplingGradient):
  """Soft resampling: draw from a * softmax(w) + (1 - a) / N, reweight.

  The new weights softmax(w)_a / q_a carry gradients to the old weights.
  With mixing 1 the mixture is softmax(w) itself, the new weights are
  exactly 0 and so are their gradients: `Stop`.

  Args:
    mixing: the weight a on softmax(w), in [0, 1]. Default value: 0.5.
  """

  name = "soft"

  def __init__(self, mixing=0.5):
    if not 0. <= float(mixing) <= 1.:
      raise ValueError(f"Soft resampling's mixing must be in [0, 1], got "
                       f"{mixing}.")
    self.mixing = float(mixing)

  def resample(self, log_weights, seed, resample_fn):
    dtype = log_weights.dtype
    log_probs = criteria.log_normalize(log_weights)
    if self.mixing == 1.:
      # Not the log-sum-exp below: its gradient at a zero-weight particle is
      # 0 * inf = NaN.
      log_mixture = log_probs
    else:
      n = tf.cast(tf.shape(log_weights)[0], dtype)
      mixing = tf.cast(self.mixing, dtype)
      log_mixture = tf.reduce_logsumexp(
          tf.stack([tf.math.log(mixing) + log_probs,
                    tf.math.log1p(-mixing) - tf.math.log(n) +
                    tf.zeros_like(log_probs)]), axis=0)
    ancestors = resample_fn(log_mixture, seed)
    correction = _at_ancestors(log_probs - log_mixture, ancestors)
    return Resampled(ancestors, None, correction, None)

  def __repr__(self):
    return f"Soft(mixing={self.mixing})"


class Concrete(ResamplingGradient):
  """Concrete relaxation of a multinomial ancestor draw.

  Row n of the mixing matrix is softmax((log softmax(w) + g_n) / temperature)
  over the parents, g_n Gumbel; the hard ancestors are its argmax (those of
  `resampling.multinomial_gumbel` with the same seed). `resample_fn` is not
  used: the relaxation is of the multinomial draw.

  Args:
    temperature: > 0 and finite. Default value: 0.5.
  """

  name = "concrete"

  def __init__(self, temperature=0.5):
    if not float(temperature) > 0. or math.isinf(float(temperature)):
      raise ValueError(f"The Concrete temperature must be positive and "
                       f"finite, got {temperature}.")
    self.temperature = float(temperature)

  def resample(self, log_weights, seed, resample_fn):
    del resample_fn
    log_probs = criteria.log_normalize(log_weights)  # with gradient
    perturbed = log_probs[tf.newaxis] + resampling.gumbel_noise(
        log_weights, seed)
    scaled = perturbed / tf.cast(self.temperature, log_weights.dtype)
    # softmax over the parents, written out: tf.nn.softmax on a middle axis
    # transposes by a computed permutation, which XLA cannot compile in a
    # while-loop gradient.
    mixing = tf.exp(scaled - tf.reduce_logsumexp(scaled, axis=1,
                                                 keepdims=True))
    ancestors = tf.argmax(tf.stop_gradient(perturbed), axis=1,
                          output_type=tf.int32)
    return Resampled(ancestors, mixing, tf.zeros_like(log_weights), None)

  def __repr__(self):
    return f"Concrete(temperature={self.temperature})"
