"""The resampling gradient estimators: what theory promises of each.

- "score" is unbiased for the gradient of E[log p_hat]: its mean gradient
  matches finite differences of E[log p_hat] taken over many sweeps with
  common random numbers (forward values only, so the check is independent
  of any gradient code); "stop" misses it on the same model.
- "soft" with mixing 1 is "stop", value and gradient.
- "concrete" tends to hard Gumbel-max resampling as its temperature falls.
- Every estimator leaves padding without effect and p_hat (soft) unbiased.
"""

import numpy as np
import pytest
import tensorflow as tf

from seqlvm import bounds
from seqlvm import registry
from seqlvm import shapes
from seqlvm.models import LinearGaussianSSM
from seqlvm.smc import criteria
from seqlvm.smc import filter as filter_lib
from seqlvm.smc import gradients
from seqlvm.smc import resampling

# A 1-d linear-Gaussian model with a bootstrap proposal: resampling matters
# (the weights vary a lot), and 5 steps of 4 particles make many sweeps cheap.
T, N, A0, EPS = 5, 4, 0.9, 0.02


def _oracle(a=A0, proposal="bootstrap"):
  variable = tf.Variable([[a]], dtype=tf.float64)
  model = LinearGaussianSSM(variable, 1., [[1.]], 0.5, 1., proposal=proposal,
                            dtype=tf.float64)
  return model, variable


def _sweep(model, x, estimator="stop", seed=(1, 2), criterion=criteria.always,
           resample_fn=resampling.multinomial, mask=None, **kwargs):
  return filter_lib.smc(
      model, x, mask, num_particles=N, resample_criterion_fn=criterion,
      resample_fn=resample_fn,
      resampling_gradient=registry.GRADIENTS.load(estimator)(**kwargs),
      seed=seed).log_marginal


def _mean_gradient(model, variable, x, estimator, groups, seed):
  """Mean and standard error of d mean(log p_hat) / da over `groups`
  independent batches of sweeps."""

  @tf.function
  def one(seed):
    with tf.GradientTape() as tape:
      value = tf.reduce_mean(_sweep(model, x, estimator, seed))
    return tape.gradient(value, variable)[0, 0]

  values = np.array([one(tf.constant([seed, g])).numpy()
                     for g in range(groups)])
  return values.mean(), values.std(ddof=1) / np.sqrt(groups)


def test_score_is_unbiased_and_stop_is_not():
  model, a = _oracle()
  x = model.sample(T, 1, seed=(5, 5))
  sweeps, groups = 60000, 30
  # Finite differences of E[log p_hat] with common random numbers: the same
  # seed at a +- eps, so most sweeps draw the same noise and ancestors.
  tiled = tf.tile(x, [1, sweeps, 1])
  forward = tf.function(lambda: _sweep(model, tiled, seed=(7, 7)))
  a.assign([[A0 + EPS]])
  up = forward().numpy()
  a.assign([[A0 - EPS]])
  down = forward().numpy()
  a.assign([[A0]])
  differences = (up - down) / (2 * EPS)
  fd, fd_se = differences.mean(), differences.std() / np.sqrt(sweeps)

  batch = tf.tile(x, [1, sweeps // groups, 1])
  score, score_se = _mean_gradient(model, a, batch, "score", groups, 11)
  stop, stop_se = _mean_gradient(model, a, batch, "stop", groups, 11)
  # Within Monte Carlo error (4 standard errors of the difference) ...
  assert abs(score - fd) < 4 * np.hypot(score_se, fd_se), (score, fd)
  # ... while the FIVO gradient is off by many (the dropped score term).
  assert abs(stop - fd) > 8 * np.hypot(stop_se, fd_se), (stop, fd)
  # Neither is the gradient of log p(x), which E[log p_hat] < log p(x) is not.
  with tf.GradientTape() as tape:
    log_p = tf.reduce_sum(model.log_likelihood(x))
  exact = tape.gradient(log_p, a).numpy().item()
  assert abs(exact - fd) > 8 * fd_se


def test_score_keeps_the_forward_value_and_changes_the_gradient():
  model, a = _oracle()
  x = model.sample(T, 3, seed=(1, 1))
  values, grads = {}, {}
  for name in ("stop", "score"):
    with tf.GradientTape() as tape:
      values[name] = _sweep(model, x, name)
      total = tf.reduce_sum(values[name])
    grads[name] = tape.gradient(total, a).numpy()
  np.testing.assert_array_equal(values["score"], values["stop"])
  assert not np.allclose(grads["score"], grads["stop"])


@pytest.mark.parametrize("criterion", ["always", "ess"])
def test_soft_with_mixing_one_is_stop(criterion):
  model, a = _oracle(proposal="filtering")
  x = model.sample(8, 3, seed=(2, 2))
  rule = registry.CRITERIA.build(criterion, threshold=0.5)
  results = {}
  for name, kwargs in (("stop", {}), ("soft", {"mixing": 1.})):
    with tf.GradientTape() as tape:
      value = _sweep(model, x, name, criterion=rule, **kwargs)
      total = tf.reduce_sum(value)
    results[name] = value.numpy(), tape.gradient(total, a).numpy()
  np.testing.assert_array_equal(results["soft"][0], results["stop"][0])
  # The same gradient, up to the order of float64 sums of exact zeros.
  np.testing.assert_allclose(results["soft"][1], results["stop"][1],
                             rtol=1e-12)
  # Below 1 it is another estimator, with gradients through the new weights.
  with tf.GradientTape() as tape:
    value = _sweep(model, x, "soft", criterion=rule, mixing=0.3)
    total = tf.reduce_sum(value)
  assert not np.allclose(value, results["stop"][0])
  assert not np.allclose(tape.gradient(total, a), results["stop"][1])


def test_concrete_tends_to_hard_resampling_as_the_temperature_falls():
  model, _ = _oracle(proposal="filtering")
  x = model.sample(10, 4, seed=(3, 3))
  # multinomial_gumbel draws the argmax of the same Gumbel noise.
  hard = _sweep(model, x, "stop", resample_fn=resampling.multinomial_gumbel)
  gaps = []
  for temperature in (1., 0.1, 0.01, 0.001, 0.0001):
    relaxed = _sweep(model, x, "concrete", temperature=temperature)
    gaps.append(np.abs(relaxed - hard).max())
  assert gaps[0] > 1e-2  # a real relaxation at temperature 1
  assert all(later < earlier for earlier, later in zip(gaps, gaps[1:])), gaps
  assert gaps[-1] < 1e-6, gaps


def test_gumbel_max_resampling_is_multinomial():
  probs = np.array([0.1, 0., 0.45, 0.25, 0.2])
  b = 20000
  with np.errstate(divide="ignore"):
    log_weights = tf.constant(np.tile(np.log(probs)[:, None], [1, b]))
  ancestors = resampling.multinomial_gumbel(log_weights, (4, 4)).numpy().T
  counts = np.stack([np.bincount(row, minlength=5) for row in ancestors])
  se = np.sqrt(5 * probs * (1 - probs) / b)
  np.testing.assert_array_less(np.abs(counts.mean(0) - 5 * probs),
                               5 * se + 1e-12)
  # Multinomial: each count is binomial(N, p), variance N p (1 - p).
  np.testing.assert_allclose(counts.var(0), 5 * probs * (1 - probs),
                             atol=0.03)


def test_concrete_mixes_float_states_and_gathers_integer_ones():
  mixing = tf.constant([[[0.25], [0.75]], [[1.], [0.]]], tf.float64)  # [2,2,1]
  ancestors = tf.constant([[1], [0]], tf.int32)
  state = (tf.constant([[0.], [4.]], tf.float64), tf.constant([3, 9]))
  mixed = filter_lib.mix_particles(state, mixing, ancestors, 1)
  np.testing.assert_allclose(mixed[0].numpy(), [[3.], [0.]])
  np.testing.assert_array_equal(mixed[1].numpy(), [9, 3])


def test_soft_resampling_keeps_p_hat_unbiased():
  model, _ = _oracle(proposal="filtering")
  x = model.sample(8, 1, seed=(6, 6))
  exact = float(model.log_likelihood(x)[0])
  sweeps = 20000
  values = _sweep(model, tf.tile(x, [1, sweeps, 1]), "soft", seed=(8, 8),
                  mixing=0.5).numpy()
  # log of the mean of p_hat / p(x); its standard error by the delta method.
  ratios = np.exp(values - exact)
  assert abs(ratios.mean() - 1.) < 4 * ratios.std() / np.sqrt(sweeps)
  assert values.mean() < exact


@pytest.mark.parametrize("estimator", registry.GRADIENTS.names)
def test_padding_leaves_value_and_gradient_unchanged(estimator):
  model, a = _oracle(proposal="filtering")
  x = model.sample(7, 2, seed=(8, 1))
  lengths = [7, 4]
  padded = tf.concat([x, 100. * tf.ones([5, 2, 1], x.dtype)], 0)
  results = []
  for data, steps in ((x, 7), (padded, 12)):
    with tf.GradientTape() as tape:
      value = _sweep(model, data, estimator,
                     mask=shapes.sequence_mask(lengths, steps),
                     criterion=criteria.ess_below_threshold(0.8))
      total = tf.reduce_sum(value)
    results.append((value.numpy(), tape.gradient(total, a).numpy()))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
  np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-10)


@pytest.mark.parametrize("estimator", registry.GRADIENTS.names)
def test_every_estimator_compiles_under_xla(estimator):
  model, a = _oracle(proposal="bootstrap")
  x = model.sample(6, 3, seed=(4, 4))

  @tf.function(jit_compile=True)
  def step(x, seed):
    with tf.GradientTape() as tape:
      # The ESS rule (as in training by default): some filters resample at
      # a step and others do not.
      value = tf.reduce_sum(bounds.fivo(
          model, x, num_particles=N, resampling="ess", threshold=0.9,
          resampling_gradient=estimator, seed=seed))
    return value, tape.gradient(value, a)

  value, grad = step(x, tf.constant([1, 1]))
  assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad.numpy()))


def test_bad_estimator_arguments_name_the_problem():
  model, _ = _oracle()
  x = model.sample(3, 1, seed=(1, 1))
  with pytest.raises(ValueError, match="stop, score, soft, concrete"):
    bounds.fivo(model, x, resampling_gradient="straight-through")
  with pytest.raises(ValueError, match="needs the multinomial scheme"):
    bounds.fivo(model, x, resampling_gradient="score", scheme="systematic")
  with pytest.raises(ValueError, match="needs the multinomial scheme"):
    bounds.fivo(model, x, resampling_gradient="concrete", scheme="residual")
  with pytest.raises(ValueError, match=r"mixing must be in \[0, 1\]"):
    bounds.fivo(model, x, resampling_gradient="soft", soft_mixing=1.5)
  with pytest.raises(ValueError, match="temperature must be positive"):
    bounds.fivo(model, x, resampling_gradient="concrete",
                resampling_temperature=0.)
  with pytest.raises(ValueError, match="score_baseline"):
    gradients.Score(baseline="vimco")
  with pytest.raises(ValueError, match="needs multinomial resampling"):
    filter_lib.smc(model, x, resample_fn=resampling.systematic,
                   resample_criterion_fn=criteria.always,
                   resampling_gradient=gradients.Score())


def test_a_zero_likelihood_stays_minus_infinity():
  # A sequence no particle can explain gives log p_hat = -inf, not NaN, with
  # every estimator (the score term is only added for "score").
  model, _ = _oracle()
  x = tf.constant([[[1e300]]], tf.float64)
  for name in ("stop", "soft", "concrete"):
    value = _sweep(model, tf.tile(x, [3, 1, 1]), name).numpy()
    assert np.all(value == -np.inf), (name, value)


def test_the_python_loop_gives_the_same_score_gradient():
  model, a = _oracle()
  x = model.sample(4, 2, seed=(3, 1))
  results = []
  for loop in ("while_loop", "python"):
    with tf.GradientTape() as tape:
      value = filter_lib.smc(
          model, x, num_particles=N, resample_criterion_fn=criteria.always,
          resampling_gradient=gradients.Score(), loop=loop,
          seed=(2, 2)).log_marginal
      total = tf.reduce_sum(value)
    results.append((value.numpy(), tape.gradient(total, a).numpy()))
  np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12)
  np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-10)


class _CountResamplings(gradients.Stop):
  """A new estimator with its own carried state, written without touching
  the sweep: it counts each filter's resamplings and returns the count."""

  def initial_extra(self, mask, dtype):
    return {"count": tf.zeros(tf.shape(mask)[1:], dtype)}

  def update_extra(self, extra, resampled, fire, mask_t, log_p_hat):
    return {"count": extra["count"] + tf.cast(fire, extra["count"].dtype)}

  def finalize(self, log_p_hat, extra):
    return extra["count"]


@pytest.mark.parametrize("compiled", [False, True])
def test_the_sweep_carries_an_estimators_state_without_looking_inside(
    compiled):
  model, _ = _oracle(proposal="bootstrap")
  x = model.sample(9, 3, seed=(5, 5))
  mask = shapes.sequence_mask([9, 6, 2], 9)

  def run(x):
    return filter_lib.smc(
        model, x, mask, num_particles=N,
        resample_criterion_fn=criteria.ess_below_threshold(0.9),
        resampling_gradient=_CountResamplings(), seed=(3, 3))

  result = tf.function(run)(x) if compiled else run(x)
  counts = tf.reduce_sum(tf.cast(result.resampled, tf.float64), axis=0)
  np.testing.assert_array_equal(result.log_marginal, counts)
  assert counts.numpy().max() > 0
