"""ELBO, IWAE and FIVO: three configurations of one SMC sweep.

    elbo  = smc(never resample, final weights averaged)
    iwae  = smc(never resample, final weights log-mean-exp'd)
    fivo  = smc(resample when ESS < threshold * N, or always)

Each returns the bound per sequence, float `[B]`, in nats. Their expectations
order as E[elbo] <= E[iwae_N] <= log p(x), and E[fivo_N] <= log p(x); the
particle estimate exp(iwae) or exp(fivo) is unbiased for p(x).

Recommended import: `from seqlvm import bounds`.

#### References
[1] Burda, Grosse, Salakhutdinov. Importance Weighted Autoencoders. ICLR 2016.
    https://arxiv.org/abs/1509.00519
[2] Maddison et al. Filtering Variational Objectives. NeurIPS 2017.
    https://arxiv.org/abs/1705.09279
"""

from seqlvm.smc import criteria
from seqlvm.smc import resampling as resampling_lib
from seqlvm.smc import filter as filter_lib

__all__ = ["elbo", "iwae", "fivo", "bound", "NAMES"]

NAMES = ("elbo", "iwae", "fivo")


def elbo(model, x, mask=None, num_particles=1, seed=None):
  """The evidence lower bound, averaged over `num_particles` samples.

  Args:
    model: a `seqlvm.models.SequenceModel`.
    x: float `[T, B, D]`, time-major.
    mask: optional bool `[T, B]`, True where a step is real.
    num_particles: independent samples whose ELBOs are averaged (this lowers
      the variance of the estimate, not the bound). Default value: 1.
    seed: stateless seed or None.

  Returns:
    bound: float `[B]`.
  """
  return filter_lib.smc(
      model, x, mask, num_particles=num_particles,
      resample_criterion_fn=criteria.never, final_reduction="mean",
      seed=seed, name="elbo").log_marginal


def iwae(model, x, mask=None, num_particles=4, seed=None):
  """The importance-weighted bound: N particles, never resampled.

  Args:
    model: a `seqlvm.models.SequenceModel`.
    x: float `[T, B, D]`, time-major.
    mask: optional bool `[T, B]`, True where a step is real.
    num_particles: Default value: 4.
    seed: stateless seed or None.

  Returns:
    bound: float `[B]`.
  """
  return filter_lib.smc(
      model, x, mask, num_particles=num_particles,
      resample_criterion_fn=criteria.never, final_reduction="logmeanexp",
      seed=seed, name="iwae").log_marginal


def fivo(model, x, mask=None, num_particles=4, resampling="ess",
         threshold=0.5, scheme="multinomial", resampling_gradient="stop",
         soft_mixing=0.5, resampling_temperature=0.5, seed=None):
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
      `seqlvm.smc.resampling`): "stop" (FIVO's: the score-function term is
      dropped; biased, low variance), "score" (adds that term with a
      running-mean baseline; unbiased, needs the multinomial scheme), "soft"
      (draws from a mixture with the uniform and reweights) or "concrete"
      (relaxes the draw; multinomial scheme). Default value: "stop".
    soft_mixing: "soft"'s weight on softmax(w), in [0, 1]; 1 is "stop".
      Default value: 0.5.
    resampling_temperature: "concrete"'s temperature, > 0; its forward value
      tends to hard resampling's as it falls. Default value: 0.5.
    seed: stateless seed or None.

  Returns:
    bound: float `[B]`.

  Raises:
    ValueError: for an unknown criterion, scheme or gradient estimator.
  """
  estimator = resampling_lib.get_gradient(
      resampling_gradient, scheme=scheme, mixing=soft_mixing,
      temperature=resampling_temperature)
  return filter_lib.smc(
      model, x, mask, num_particles=num_particles,
      resample_criterion_fn=criteria.get(resampling, threshold),
      resample_fn=resampling_lib.get(scheme), final_reduction="logmeanexp",
      resampling_gradient=estimator, seed=seed, name="fivo").log_marginal


def bound(name, model, x, mask=None, num_particles=4, seed=None, **fivo_kwargs):
  """Dispatches to `elbo`, `iwae` or `fivo` by name (for runners and the CLI)."""
  if name == "elbo":
    return elbo(model, x, mask, num_particles=num_particles, seed=seed)
  if name == "iwae":
    return iwae(model, x, mask, num_particles=num_particles, seed=seed)
  if name == "fivo":
    return fivo(model, x, mask, num_particles=num_particles, seed=seed,
                **fivo_kwargs)
  raise ValueError(f"Unknown bound {name!r}; choose one of {', '.join(NAMES)}.")
