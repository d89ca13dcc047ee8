"""Conditioned generation (`seqlvm.infer`) against the linear-Gaussian
model's closed-form joint Gaussian of x_{1:T}."""

import numpy as np
import pytest
import tensorflow as tf

from seqlvm import infer
from seqlvm.models import LinearGaussianSSM
from tests.conftest import random_lgssm_params

T, DZ, DX = 4, 2, 3
# Correlated observation noise: the completion's conditional is not the
# marginal.
R_TRIL = np.array([[0.8, 0., 0.], [0.4, 0.6, 0.], [-0.3, 0.2, 0.7]])


def _params():
  params = random_lgssm_params(seed=4, latent_size=DZ, data_size=DX)
  params["observation_noise_scale"] = R_TRIL
  return params


def _model(proposal):
  return LinearGaussianSSM(proposal=proposal, dtype=tf.float64, **_params())


def _joint(num_steps):
  """The covariance of vec(x_{1:T}) `[T*Dx, T*Dx]` (its mean is zero)."""
  p = _params()
  a, c = p["transition_matrix"], p["observation_matrix"]
  q = np.eye(DZ) * p["transition_noise_scale"] ** 2
  p0 = np.eye(DZ) * p["initial_scale"] ** 2
  r = R_TRIL @ R_TRIL.T
  v = [p0]
  for _ in range(1, num_steps):
    v.append(a @ v[-1] @ a.T + q)
  cov = np.zeros([num_steps * DX] * 2)
  for s in range(num_steps):
    for t in range(s, num_steps):
      zz = np.linalg.matrix_power(a, t - s) @ v[s]  # cov(z_t, z_s)
      block = c @ zz @ c.T + (r if s == t else 0.)
      cov[t * DX:(t + 1) * DX, s * DX:(s + 1) * DX] = block
      cov[s * DX:(s + 1) * DX, t * DX:(t + 1) * DX] = block.T
  return cov


def _gaussian_log_pdf(x, cov):
  _, logdet = np.linalg.slogdet(cov)
  return -0.5 * (x @ np.linalg.solve(cov, x) + logdet +
                 len(x) * np.log(2 * np.pi))


def _conditional(x_vec, observed_vec, cov):
  """Mean and covariance of the missing entries given the observed ones."""
  o, m = observed_vec, ~observed_vec
  gain = cov[np.ix_(m, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
  return gain @ x_vec[o], cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]


def _data():
  x = _model("bootstrap").sample(T, 1, seed=(3, 4)).numpy()  # [T, 1, Dx]
  observed = np.ones([T, 1, DX], bool)
  observed[1] = False  # a whole step missing
  observed[2, 0, 1] = False  # one entry
  observed[3, 0, [0, 2]] = False  # two entries
  return x, observed


def test_the_joint_gaussian_is_the_kalman_likelihood():
  """The test's closed form agrees with TFP's Kalman filter."""
  x, _ = _data()
  exact = _gaussian_log_pdf(x[:, 0].reshape(-1), _joint(T))
  kalman = float(_model("bootstrap").log_likelihood(x)[0])
  np.testing.assert_allclose(kalman, exact, rtol=1e-10)


@pytest.mark.parametrize("proposal", ["bootstrap", "filtering"])
def test_a_step_with_nothing_observed_adds_exactly_zero(proposal):
  model = _model(proposal)
  rows = 5
  first = tf.constant([True, False, False, True, False])
  context = model.prepare(tf.zeros([1, rows, DX], tf.float64),
                          tf.ones([1, rows], bool))._replace(first=first)
  state = tf.random.stateless_normal([rows, DZ], (1, 2), dtype=tf.float64)
  x_t = tf.random.stateless_normal([rows, DX], (3, 4), dtype=tf.float64)
  out = model.step(state, context, x_t, (5, 6),
                   observed=tf.zeros([rows, DX], bool))
  increment = (out.log_p_z + out.log_p_x_given_z - out.log_q_z).numpy()
  assert np.all(increment == 0.)
  # Every entry drawn: x_t given nothing is not x_t.
  assert not np.any(out.x.numpy() == x_t.numpy())


def test_fully_observed_weights_equal_the_plain_step():
  """observed all True: the same draws and, to rounding, the same weights
  as the step without a mask."""
  for proposal in ("bootstrap", "filtering"):
    model = _model(proposal)
    rows = 4
    context = tf.nest.map_structure(lambda c: c[0], model.prepare(
        tf.zeros([1, rows, DX], tf.float64), tf.ones([1, rows], bool)))
    state = tf.random.stateless_normal([rows, DZ], (1, 2), dtype=tf.float64)
    x_t = tf.random.stateless_normal([rows, DX], (3, 4), dtype=tf.float64)
    plain = model.step(state, context, x_t, (5, 6))
    partial = model.step(state, context, x_t, (5, 6),
                         observed=tf.ones([rows, DX], bool))
    np.testing.assert_array_equal(partial.x.numpy(), x_t.numpy())
    for name in ("log_p_z", "log_p_x_given_z", "log_q_z"):
      np.testing.assert_allclose(getattr(partial, name).numpy(),
                                 getattr(plain, name).numpy(), rtol=1e-10)
    if proposal == "bootstrap":
      np.testing.assert_array_equal(partial.state.numpy(),
                                    plain.state.numpy())
    else:
      np.testing.assert_allclose(partial.state.numpy(), plain.state.numpy(),
                                 rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("proposal", ["bootstrap", "filtering"])
def test_log_marginal_of_the_observed_entries_is_unbiased(proposal):
  """The mean of p_hat(x_observed) / p(x_observed) over independent sweeps
  is 1 within 5 standard errors (N = 4, so each sweep is noisy)."""
  x, observed = _data()
  cov = _joint(T)
  o = observed[:, 0].reshape(-1)
  exact = _gaussian_log_pdf(x[:, 0].reshape(-1)[o], cov[np.ix_(o, o)])
  result = infer.impute(_model(proposal), x, observed, num_particles=4,
                        seed=(7, 8), num_samples=4000, independent=True)
  ratio = np.exp(result.log_marginal.numpy()[:, 0] - exact)
  se = ratio.std(ddof=1) / np.sqrt(len(ratio))
  assert abs(ratio.mean() - 1.) < 5 * se, (ratio.mean(), se)
  assert 0. < se < 0.2  # the check has power: p_hat varies, not wildly
  # Jensen: the mean log p_hat is below log p (a bound).
  assert result.log_marginal.numpy().mean() < exact


def _check_moments(samples, mean, cov, what):
  """Sample mean and covariance within 5 Monte Carlo standard errors."""
  s = len(samples)
  mean_se = np.sqrt(np.diag(cov) / s)
  assert np.all(np.abs(samples.mean(0) - mean) < 5 * mean_se), (
      what, samples.mean(0), mean, mean_se)
  got = np.cov(samples, rowvar=False)
  cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / s)
  assert np.all(np.abs(got - cov) < 5 * cov_se), (what, got, cov)


def test_imputed_entries_follow_the_exact_conditional_gaussian():
  """Whole steps and single entries missing: the missing entries' sample
  mean and covariance over 3000 independent sweeps (N = 64, filtering
  proposal) are the closed-form conditional's."""
  x, observed = _data()
  result = infer.impute(_model("filtering"), x, observed, num_particles=64,
                        seed=(9, 10), num_samples=3000, independent=True)
  samples = result.samples.numpy()[:, :, 0]  # [S, T, Dx]
  assert samples.shape == (3000, T, DX)
  # Observed entries are given back as they are.
  np.testing.assert_array_equal(samples[:, observed[:, 0]],
                                np.broadcast_to(x[:, 0][observed[:, 0]],
                                                (3000, observed.sum())))
  o = observed[:, 0].reshape(-1)
  mean, cov = _conditional(x[:, 0].reshape(-1), o, _joint(T))
  _check_moments(samples.reshape(3000, -1)[:, ~o], mean, cov, "impute")


def test_continuation_follows_the_kalman_forecast():
  """Two steps after a 3-step primer: the continued steps' mean and
  covariance are p(x_4, x_5 | x_1..3)'s (the Kalman forecast)."""
  steps = 5
  x = _model("bootstrap").sample(steps, 1, seed=(11, 12)).numpy()
  prime = x[:3]
  result = infer.continuation(_model("filtering"), prime, num_steps=2,
                              num_particles=64, seed=(13, 14),
                              num_samples=3000, independent=True)
  samples = result.samples.numpy()[:, :, 0]  # [S, 5, Dx]
  np.testing.assert_array_equal(samples[:, :3],
                                np.broadcast_to(prime[:, 0], (3000, 3, DX)))
  observed = np.zeros([steps, DX], bool)
  observed[:3] = True
  vec = np.concatenate([prime[:, 0], np.zeros([2, DX])]).reshape(-1)
  mean, cov = _conditional(vec, observed.reshape(-1), _joint(steps))
  _check_moments(samples[:, 3:].reshape(3000, -1), mean, cov, "continue")
  # The primer's p_hat is unbiased for its exact likelihood (the steps
  # after it add nothing).
  exact = float(_model("bootstrap").log_likelihood(prime)[0])
  ratio = np.exp(result.log_marginal.numpy()[:, 0] - exact)
  assert abs(ratio.mean() - 1.) < 5 * ratio.std(ddof=1) / np.sqrt(3000)


def _vrnn(latent="gaussian"):
  from seqlvm import models  # pylint: disable=g-import-not-at-top
  return models.VRNN(3, hidden_size=6, latent_size=2, latent=latent,
                     categories=3, data_mean=np.array([0.3, 0.5, 0.2]),
                     seed=3)


def _vrnn_step(model, observed, seed=(5, 6)):
  rows = 4
  x = tf.constant((np.random.RandomState(0).rand(2, rows, 3) < 0.4)
                  .astype(np.float32))
  context = tf.nest.map_structure(
      lambda c: c[0], model.prepare(x, tf.ones([2, rows], bool)))
  state = model.partial_initial_state(rows)
  return model.step(state, context, x[0], seed,
                    observed=tf.constant(observed, bool)), x[0], context


@pytest.mark.parametrize("latent", ["gaussian", "concrete"])
def test_vrnn_step_with_nothing_observed_adds_exactly_zero(latent):
  model = _vrnn(latent)
  for m in (model, model.for_evaluation()):
    out, _, _ = _vrnn_step(m, np.zeros([4, 3], bool))
    increment = (out.log_p_z + out.log_p_x_given_z - out.log_q_z).numpy()
    assert np.all(increment == 0.), increment
    assert set(np.unique(out.x.numpy())) <= {0., 1.}


def test_vrnn_fully_observed_step_is_the_plain_step():
  """Observed everywhere, at the first step: the plain step's draw and
  weights (its seed is the partial step's proposal seed)."""
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  model = _vrnn()
  out, x_t, context = _vrnn_step(model, np.ones([4, 3], bool))
  z_seed = tfp.random.split_seed((5, 6), n=3)[0]
  plain = model.step(model.initial_state(4), context, x_t, z_seed)
  np.testing.assert_array_equal(out.x.numpy(), x_t.numpy())
  np.testing.assert_allclose(out.state[2].numpy(), plain.state[2].numpy(),
                             rtol=1e-6)
  for name in ("log_p_z", "log_p_x_given_z", "log_q_z"):
    np.testing.assert_allclose(getattr(out, name).numpy(),
                               getattr(plain, name).numpy(), rtol=1e-5)


def test_vrnn_lstm_reads_each_particles_completed_previous_x():
  """Two partial steps: the second step's LSTM state equals a plain step's
  whose `prepare` saw the first step's completed x (per particle), and
  differs from one that saw the mean-filled x."""
  model = _vrnn()
  rows = 4
  x = tf.constant((np.random.RandomState(2).rand(2, rows, 3) < 0.5)
                  .astype(np.float32))
  observed_0 = tf.constant([[True, False, False]] * rows)  # two drawn
  filled = tf.where(observed_0, x[0], model.data_mean[tf.newaxis])
  context = model.prepare(tf.stack([filled, x[1]]), tf.ones([2, rows], bool))
  at = lambda c, t: tf.nest.map_structure(lambda v: v[t], c)
  out_0 = model.step(model.partial_initial_state(rows), at(context, 0), x[0],
                     (1, 2), observed=observed_0)
  out_1 = model.step(out_0.state, at(context, 1), x[1], (3, 4),
                     observed=tf.ones([rows, 3], bool))
  completed = model.prepare(tf.stack([out_0.x, x[1]]),
                            tf.ones([2, rows], bool))
  plain = model.step(out_0.state[:3], at(completed, 1), x[1], (5, 6))
  np.testing.assert_allclose(out_1.state[0].numpy(), plain.state[0].numpy(),
                             rtol=1e-5, atol=1e-6)
  assert not np.array_equal(out_0.x.numpy(), filled.numpy())
  mean_filled = model.step(out_0.state[:3], at(context, 1), x[1], (5, 6))
  assert np.abs(mean_filled.state[0].numpy() -
                plain.state[0].numpy()).max() > 1e-4


def test_vrnn_marginal_of_a_missing_note_sums_its_two_values():
  """One binary entry missing at the last step: p(x_observed) = p(x with
  it off) + p(x with it on). The mean p_hat of each (independent sweeps,
  unbiased) agree within 4 standard errors of the difference."""
  model = _vrnn()
  x = (np.random.RandomState(1).rand(3, 1, 3) < 0.4).astype(np.float32)
  observed = np.ones_like(x, bool)
  observed[2, 0, 1] = False
  estimates = []
  for value in (None, 0., 1.):
    full = x.copy()
    mask = observed if value is None else np.ones_like(observed)
    if value is not None:
      full[2, 0, 1] = value
    p_hat = np.exp(infer.impute(model, full, mask, num_particles=8,
                                seed=(21, 22), num_samples=3000,
                                independent=True).log_marginal.numpy()[:, 0])
    estimates.append((p_hat.mean(), p_hat.var(ddof=1) / len(p_hat)))
  (partial, v0), (off, v1), (on, v2) = estimates
  assert abs(partial - (off + on)) < 4 * np.sqrt(v0 + v1 + v2), estimates
  assert 0.05 < off / (off + on) < 0.95  # both values matter


def test_vrnn_with_nothing_observed_samples_the_prior():
  """No entry observed: log p_hat is exactly 0 and the imputed notes have
  the model's own note frequencies (its ancestral samples), step by step."""
  model = _vrnn()
  steps, count = 4, 3000
  nothing = np.zeros([steps, 1, 3], bool)
  result = infer.impute(model, np.zeros([steps, 1, 3]), nothing,
                        num_particles=4, seed=(31, 32), num_samples=count,
                        independent=True)
  assert np.all(result.log_marginal.numpy() == 0.)
  imputed = result.samples.numpy()[:, :, 0].mean(0)  # [T, D]
  prior = model.sample(steps, count, seed=(33, 34)).numpy().mean(1)
  se = np.sqrt(0.25 * 2 / count)
  assert np.all(np.abs(imputed - prior) < 5 * se), (imputed, prior)


def test_which_models_take_partial_observations():
  """The LGSSM (bootstrap, filtering) and the VRNN do; every other model
  refuses with a message naming itself."""
  from seqlvm import models  # pylint: disable=g-import-not-at-top
  _model("bootstrap").check_partial_observations()
  _model("filtering").check_partial_observations()
  _vrnn().check_partial_observations()
  _vrnn("concrete").for_evaluation().check_partial_observations()
  refusing = {
      "SRNN": models.SRNN(4, hidden_size=4, latent_size=2),
      "DRAW": models.DRAW(4, hidden_size=4, latent_size=2),
      "WaveNet": models.WaveNet(4, channels=4, dilations=(1,)),
      "VRNNWaveNet": models.VRNNWaveNet(4, hidden_size=4, latent_size=2,
                                        channels=4, dilations=(1,)),
  }
  for name, model in refusing.items():
    with pytest.raises(ValueError, match=f"^{name} does not take partial"):
      model.check_partial_observations()


def test_models_without_partial_observations_refuse_in_one_line():
  from seqlvm import models  # pylint: disable=g-import-not-at-top
  srnn = models.SRNN(4, hidden_size=4, latent_size=2)
  x = np.zeros([3, 1, 4], np.float32)
  with pytest.raises(ValueError, match="SRNN does not take partial"):
    infer.impute(srnn, x, np.ones_like(x, bool))
  # A VRNN whose emission reads more than h_t and z_t (the WaveNet
  # features of x_{<t}) does not inherit the VRNN's support.
  hybrid = models.VRNNWaveNet(4, hidden_size=4, latent_size=2, channels=4,
                              dilations=(1,))
  with pytest.raises(ValueError, match="VRNNWaveNet does not take partial"):
    infer.impute(hybrid, x, np.ones_like(x, bool))
  with pytest.raises(ValueError, match="smoothing proposal reads every"):
    infer.impute(_model("smoothing"), np.zeros([3, 1, DX]),
                 np.ones([3, 1, DX], bool))
  with pytest.raises(ValueError, match="observed of the same shape"):
    infer.impute(_model("filtering"), np.zeros([3, 1, DX]),
                 np.ones([3, 1, 2], bool))


def test_without_paths_the_same_sweep():
  """num_samples=0 keeps no paths: the same sweep, the same log p_hat."""
  x, observed = _data()
  with_paths = infer.impute(_model("filtering"), x, observed,
                            num_particles=16, seed=(41, 42), num_samples=2)
  weights_only = infer.impute(_model("filtering"), x, observed,
                              num_particles=16, seed=(41, 42), num_samples=0)
  assert weights_only.samples is None
  np.testing.assert_allclose(weights_only.log_marginal.numpy(),
                             with_paths.log_marginal.numpy(), rtol=1e-12)
