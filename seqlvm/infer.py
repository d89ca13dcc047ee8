"""Conditioned generation with the particle filter: what is missing, given
what is observed.

    result = infer.impute(model, x, observed, num_particles=64, seed=(1, 2))
    result.samples          # [S, T, B, D]: x completed, S paths
    result.log_marginal     # [B]: log p_hat(x_observed), unbiased in p_hat

    result = infer.continuation(model, prime, num_steps=32, ...)
    result.samples          # [S, P + num_steps, B, D]: primer, then draws

`observed` is bool `[T, B, D]` (True where an entry is given). The sweep is
FIVO's particle filter (resampling when the ESS falls below N/2) run on the
model's partial-observation step (`seqlvm.models.base`): each particle's
weight uses the emission's log density of the observed entries only, its
missing entries are drawn from the emission given its latent, and the
completed x_t is what its recurrent state reads. Each particle carries the
path of its completed x (gathered with it at every resampling), so the
particles drawn from the final weights are samples of x_missing from the
particle approximation of p(x_missing | x_observed): the ancestry of the
surviving particles, given the past and the future. Their bias falls as
1/N; weighting many independent sweeps' draws by their p_hat gives
estimates that are consistent in the number of sweeps, at any N (a ratio
of unbiased estimators). Padded steps (mask False) come back as zeros.

Cost: each particle carries its whole path `[T, D]`, rewritten at every
step and gathered at every resampling: O(T^2 N B D) in all, fine for
pianorolls (D = 88, T in the hundreds), heavy for long speech.

`log_marginal` is log p_hat(x_observed): p_hat is unbiased for
p(x_observed), so log p(x_missing | x_observed) = log p(x) -
log p(x_observed) can be estimated from two sweeps. A step with no
observed entry adds exactly zero to the log weight.

`continuation` filters the primer and rolls the model forward: the same
sweep, with the steps after the primer entirely missing.

Samples drawn from one sweep share ancestors (they are correlated);
independent samples need independent sweeps (`independent=True` runs S
sweeps side by side, one sample each).

Recommended import: `from seqlvm import infer`.
"""

import collections

import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm import bounds
from seqlvm.models import base

__all__ = ["impute", "continuation", "Imputation"]

Imputation = collections.namedtuple(
    "Imputation",
    [
        "samples",  # [S, T, B, D]: x with its missing entries drawn.
        "log_marginal",  # [B] ([S, B] with independent=True): log p_hat of
                         # the observed entries.
        "ess",  # [T, B]: the sweep's effective sample size after each step
                # (with independent=True, the first sweep's).
        "resampled",  # bool [T, B]: where it resampled (likewise).
    ])


class _PathRecorder(base.SequenceModel):
  """A model's partial-observation sweep, each particle carrying its path
  of completed observations `[T, D]`."""

  def __init__(self, model, observed, record=True):
    super().__init__(name="path_recorder")
    self.model = model
    self.observed = observed  # bool [T, B, D]
    self.num_steps = tf.shape(observed)[0]
    self.record = record  # False: the weights only (no paths kept)

  def prepare(self, x, mask):
    num_steps, batch_size = tf.shape(x)[0], tf.shape(x)[1]
    index = tf.broadcast_to(tf.range(num_steps)[:, tf.newaxis],
                            [num_steps, batch_size])
    # What `prepare` (features for the proposal) sees: the missing entries
    # at the training mean (a fixed value, so the proposal depends on the
    # observed entries only).
    mean = getattr(self.model, "data_mean", None)
    fill = (tf.zeros_like(x) if mean is None else
            tf.broadcast_to(tf.cast(mean, x.dtype), tf.shape(x)))
    filled = tf.where(self.observed, x, fill)
    return (self.model.prepare(filled, mask), self.observed, index)

  def initial_state(self, batch_size):
    inner = self.model.partial_initial_state(batch_size)
    if not self.record:
      return inner
    path = tf.zeros([batch_size, self.num_steps, self.model.data_size],
                    self.model.dtype)
    return (inner, path)

  def step(self, state, context_t, x_t, seed):
    context, observed_t, t = context_t
    if not self.record:
      out = self.model.step(state, context, x_t, seed, observed=observed_t)
      return out._replace(x=None)
    inner, path = state
    out = self.model.step(inner, context, x_t, seed, observed=observed_t)
    here = tf.equal(tf.range(self.num_steps)[tf.newaxis], t[:, tf.newaxis])
    path = tf.where(here[..., tf.newaxis],
                    tf.cast(out.x, path.dtype)[:, tf.newaxis], path)
    return out._replace(state=(out.state, path), x=None)


def _check(model, x, observed):
  model.check_partial_observations()
  x = tf.cast(tf.convert_to_tensor(x), model.dtype)
  observed = tf.cast(tf.convert_to_tensor(observed), tf.bool)
  if x.shape.rank != 3 or observed.shape != x.shape:
    raise ValueError(f"x must be [T, B, D] and observed of the same shape; "
                     f"got x {x.shape} and observed {observed.shape}.")
  if x.shape[2] != model.data_size:
    raise ValueError(f"x has {x.shape[2]} entries per step; the model has "
                     f"{model.data_size}.")
  return x, observed


def impute(model, x, observed, num_particles=64, seed=None, num_samples=1,
           mask=None, independent=False, threshold=0.5):
  """Samples of x's missing entries given its observed ones.

  Args:
    model: a model that takes partial observations
      (`model.check_partial_observations()` passes).
    x: float `[T, B, D]`; entries where `observed` is False are ignored.
    observed: bool `[T, B, D]`.
    num_particles: N. Default value: 64.
    seed: a stateless seed. Default value: None (random).
    num_samples: S paths drawn from the final weights; 0 keeps no paths
      (the weights and `log_marginal` `[B]` of one sweep only: samples is
      None). Default value: 1.
    mask: optional bool `[T, B]`, True where a step is real (padding).
    independent: run S independent sweeps (one sample each) instead of
      drawing S correlated samples from one sweep. Default value: False.
    threshold: resample when the ESS falls below threshold * N. Default
      value: 0.5 (FIVO's).

  Returns:
    An `Imputation`.

  Raises:
    ValueError: if the model cannot take partial observations, or the
      shapes disagree.
  """
  x, observed = _check(model, x, observed)
  if mask is not None:
    mask = tf.cast(tf.convert_to_tensor(mask), tf.bool)
    if mask.shape != x.shape[:2]:
      raise ValueError(f"mask must be [T, B] = {x.shape[:2]}, got "
                       f"{mask.shape}.")
  # Missing entries may hold anything (NaN too): the sweep never sees them.
  x = tf.where(observed, x, tf.zeros_like(x))
  seed = tfp.random.sanitize_seed(seed, salt="impute")
  sweep_seed, draw_seed = tfp.random.split_seed(seed, n=2)
  num_steps, batch_size = x.shape[0], x.shape[1]
  if num_samples < 0:
    raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
  independent = bool(independent and num_samples)
  copies = num_samples if independent else 1
  if copies > 1:  # S sweeps side by side: batch b of copy s at s*B + b.
    x = tf.tile(x, [1, copies, 1])
    observed = tf.tile(observed, [1, copies, 1])
    if mask is not None:
      mask = tf.tile(mask, [1, copies])
  spec = bounds.bound_spec("fivo", num_particles, resampling="ess",
                           threshold=threshold)
  recorder = _PathRecorder(model, observed, record=num_samples > 0)
  result = spec.sweep(recorder, x, mask, sweep_seed)
  if not num_samples:
    return Imputation(None, result.log_marginal, result.ess,
                      result.resampled)
  # (independent with num_samples=S: S sweeps side by side, one draw each.)
  _, paths = result.final_state  # [N*B', T, D]
  width = batch_size * copies
  # The final weights: the last step's, or uniform where it resampled.
  final = tf.where(result.resampled[-1][tf.newaxis],
                   tf.zeros_like(result.log_weights[-1]),
                   result.log_weights[-1])  # [N, B']
  draws = 1 if independent else num_samples
  chosen = tf.random.stateless_categorical(
      tf.transpose(final), draws, draw_seed, dtype=tf.int32)  # [B', S]
  rows = tf.transpose(chosen) * width + tf.range(width)[tf.newaxis]
  picked = tf.gather(paths, rows)  # [S, B', T, D]
  samples = tf.transpose(picked, [0, 2, 1, 3])  # [S, T, B', D]
  log_marginal = result.log_marginal
  if independent:  # [S, ...] even for one sample
    samples = tf.transpose(tf.reshape(
        samples, [num_steps, copies, batch_size, -1]), [1, 0, 2, 3])
    log_marginal = tf.reshape(log_marginal, [copies, batch_size])
  ess, resampled = result.ess, result.resampled
  if independent:
    ess = tf.reshape(ess, [num_steps, copies, batch_size])[:, 0]
    resampled = tf.reshape(resampled, [num_steps, copies, batch_size])[:, 0]
  return Imputation(samples, log_marginal, ess, resampled)


def continuation(model, prime, num_steps, num_particles=64, seed=None,
                 num_samples=1, prime_mask=None, independent=False):
  """Continues a primer: filters it, then draws `num_steps` more steps.

  Args:
    model: as for `impute`.
    prime: float `[P, B, D]`: every step of it is real (continue primers
      of different lengths in separate calls).
    num_steps: int, the steps to draw after the primer.
    num_particles, seed, num_samples, independent: as for `impute`.
    prime_mask: optional bool `[P, B, D]`: the primer's observed entries
      (default: all).

  Returns:
    An `Imputation` whose samples are `[S, P + num_steps, B, D]` (the
    primer's observed entries as given) and whose log_marginal is the
    primer's log p_hat.
  """
  prime = tf.cast(tf.convert_to_tensor(prime), model.dtype)
  observed = (tf.ones(tf.shape(prime), tf.bool) if prime_mask is None
              else tf.convert_to_tensor(prime_mask, tf.bool))
  shape = [num_steps, prime.shape[1], prime.shape[2]]
  x = tf.concat([prime, tf.zeros(shape, prime.dtype)], axis=0)
  observed = tf.concat([observed, tf.zeros(shape, tf.bool)], axis=0)
  return impute(model, x, observed, num_particles, seed, num_samples,
                independent=independent)
