"""ELBO, IWAE and FIVO: three configurations of one SMC sweep.

    elbo  = smc(never resample, final weights averaged)
    iwae  = smc(never resample, final weights log-mean-exp'd)
    fivo  = smc(resample when ESS < threshold * N, or always)

Each returns the bound per sequence, float `[B]`, in nats. Their expectations
order as E[elbo] <= E[iwae_N] <= log p(x), and E[fivo_N] <= log p(x); the
particle estimate exp(iwae) or exp(fivo) is unbiased for p(x).

Each runs as a compiled graph when called eagerly: one cached `tf.function`
per model and options, traced once (a new seed, batch size or length reuses
it), and built into the caller's graph when called inside a `tf.function`;
`compiled=False` runs it eagerly, op by op, for debugging (see
`seqlvm.smc.smc`).

Recommended import: `from seqlvm import bounds`.

#### References
[1] Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016.
    https://arxiv.org/abs/1509.00519
[2] Maddison et al. Filtering Variational Objectives. NeurIPS 2017.
    https://arxiv.org/abs/1705.09279
"""

import dataclasses
import functools
from typing import Any

from seqlvm import registry
from seqlvm.smc import criteria
from seqlvm.smc import filter as filter_lib
from seqlvm.smc import gradients
from seqlvm.smc import resampling as resampling_lib

__all__ = ["elbo", "iwae", "fivo", "BoundSpec", "bound_spec"]


@dataclasses.dataclass(frozen=True)
class BoundSpec:
  """A bound with every option turned into its callable: what flows down.

  Built once from names at the edge (`bound_spec`, or `seqlvm.run.factory`
  from a config) and then called as often as needed; the SMC sweep below it
  sees only the callables.

  Attributes:
    name: "elbo", "iwae" or "fivo" (the sweep's name scope).
    num_particles: N.
    resample_criterion_fn: a `criteria.ResampleCriterion` (or any callable
      log_weights `[N, B]` -> bool `[B]`).
    resample_fn: a scheme, (log_weights, seed) -> ancestors.
    resampling_gradient: a `gradients.ResamplingGradient`.
    final_reduction: "logmeanexp" or "mean" (N averaged ELBOs).
  """
  name: str
  num_particles: int
  resample_criterion_fn: Any = criteria.never
  resample_fn: Any = resampling_lib.multinomial
  resampling_gradient: Any = None
  final_reduction: str = "logmeanexp"

  def sweep(self, model, x, mask=None, seed=None, compiled=True,
            batch_weight_gradients=False, kl_weight=None):
    """The whole `seqlvm.smc.SMCResult` of one sweep (`compiled`,
    `batch_weight_gradients` and `kl_weight`, the KL annealing weight of
    training: see `seqlvm.smc.smc`)."""
    return filter_lib.smc(
        model, x, mask, num_particles=self.num_particles,
        resample_criterion_fn=self.resample_criterion_fn,
        resample_fn=self.resample_fn, final_reduction=self.final_reduction,
        resampling_gradient=self.resampling_gradient, seed=seed,
        name=self.name, compiled=compiled,
        batch_weight_gradients=batch_weight_gradients, kl_weight=kl_weight)

  def __call__(self, model, x, mask=None, seed=None, compiled=True):
    """The bound per sequence, float `[B]`."""
    return self.sweep(model, x, mask, seed, compiled).log_marginal


@functools.lru_cache(maxsize=256)
def bound_spec(name, num_particles=4, resampling="ess", threshold=0.5,
               scheme="multinomial", resampling_gradient="stop",
               soft_mixing=0.5, resampling_temperature=0.5,
               score_baseline="running_mean"):
  """The `BoundSpec` that the names ask for (the names of
  `seqlvm.registry`); FIVO's options are ignored by the ELBO and the IWAE.

  The same arguments give the same (immutable) spec, so its compiled sweeps
  are reused.

  Raises:
    ValueError (a `seqlvm.errors.ConfigError`): for an unknown name, a
      parameter out of range, or a gradient estimator that cannot use the
      scheme.
  """
  registry.BOUNDS.check(name)
  if name == "elbo":
    return BoundSpec("elbo", num_particles, final_reduction="mean")
  if name == "iwae":
    return BoundSpec("iwae", num_particles)
  registry.CRITERIA.check(resampling)
  registry.GRADIENTS.check(resampling_gradient)
  problem = registry.gradient_scheme_problem(resampling_gradient, scheme)
  if problem:
    raise registry.ConfigError(problem[0].upper() + problem[1:] + ".")
  options = dict(threshold=threshold, soft_mixing=soft_mixing,
                 resampling_temperature=resampling_temperature,
                 score_baseline=score_baseline)
  return BoundSpec(
      "fivo", num_particles,
      resample_criterion_fn=registry.CRITERIA.build(resampling, **options),
      resample_fn=registry.SCHEMES.load(scheme),
      resampling_gradient=registry.GRADIENTS.build(resampling_gradient,
                                                   **options))


def elbo(model, x, mask=None, num_particles=1, seed=None, compiled=True):
  """The evidence lower bound, averaged over `num_particles` samples.

  Args:
    model: a `seqlvm.models.SequenceModel`.
    x: float `[T, B, D]`, time-major.
    mask: optional bool `[T, B]`, True where a step is real.
    num_particles: independent samples whose ELBOs are averaged (this lowers
      the variance of the estimate, not the bound). Default value: 1.
    seed: stateless seed or None.
    compiled: False runs the sweep eagerly, op by op (debugging). Default
      value: True.

  Returns:
    bound: float `[B]`.
  """
  return bound_spec("elbo", num_particles)(model, x, mask, seed, compiled)


def iwae(model, x, mask=None, num_particles=4, seed=None, compiled=True):
  """The importance-weighted bound: N particles, never resampled.

  Args:
    model: a `seqlvm.models.SequenceModel`.
    x: float `[T, B, D]`, time-major.
    mask: optional bool `[T, B]`, True where a step is real.
    num_particles: Default value: 4.
    seed: stateless seed or None.
    compiled: False runs the sweep eagerly, op by op (debugging). Default
      value: True.

  Returns:
    bound: float `[B]`.
  """
  return bound_spec("iwae", num_particles)(model, x, mask, seed, compiled)


def fivo(model, x, mask=None, num_particles=4, resampling="ess",
         threshold=0.5, scheme="multinomial", resampling_gradient="stop",
         soft_mixing=0.5, resampling_temperature=0.5, seed=None,
         compiled=True):
  """The filtering variational objective: a particle filter's log p_hat.

  Args:
    model: a `seqlvm.models.SequenceModel`.
    x: float `[T, B, D]`, time-major.
    mask: optional bool `[T, B]`, True where a step is real.
    num_particles: Default value: 4.
    resampling: "ess" (when ESS < threshold * N), "always" or "never" (which
      makes this the IWAE). Default value: "ess".
    threshold: the ESS fraction for "ess". Default value: 0.5.
    scheme: "multinomial", "systematic", "stratified" or "residual". Default
      value: "multinomial".
    resampling_gradient: how gradients treat the ancestor draw (see
      `seqlvm.smc.gradients`): "stop" (FIVO's: the score-function term is
      dropped; biased, low variance), "score" (adds that term with a
      running-mean baseline; unbiased, needs the multinomial scheme), "soft"
      (draws from a mixture with the uniform and reweights) or "concrete"
      (relaxes the draw; multinomial scheme). Default value: "stop".
    soft_mixing: "soft"'s weight on softmax(w), in [0, 1]; 1 is "stop".
      Default value: 0.5.
    resampling_temperature: "concrete"'s temperature, > 0; its forward value
      tends to hard resampling's as it falls. Default value: 0.5.
    seed: stateless seed or None.
    compiled: False runs the sweep eagerly, op by op (debugging). Default
      value: True.

  Returns:
    bound: float `[B]`.

  Raises:
    ValueError: for an unknown criterion, scheme or gradient estimator.
  """
  return bound_spec(
      "fivo", num_particles, resampling=resampling, threshold=threshold,
      scheme=scheme, resampling_gradient=resampling_gradient,
      soft_mixing=soft_mixing,
      resampling_temperature=resampling_temperature)(model, x, mask, seed,
                                                     compiled)
