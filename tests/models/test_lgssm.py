import numpy as np
import pytest
import tensorflow as tf

from seqlvm import shapes
from seqlvm.models import LinearGaussianSSM
from tests.conftest import random_lgssm_params


def numpy_kalman_log_likelihood(x, a, q, c, r, p0):
  """A plain Kalman filter, written independently of TFP. x: [T, Dx]."""
  mean = np.zeros(a.shape[0])
  cov = p0
  total = 0.
  for t, x_t in enumerate(x):
    if t > 0:
      mean, cov = a @ mean, a @ cov @ a.T + q
    s = c @ cov @ c.T + r
    resid = x_t - c @ mean
    total += -0.5 * (resid @ np.linalg.solve(s, resid) +
                     np.linalg.slogdet(2 * np.pi * s)[1])
    gain = cov @ c.T @ np.linalg.inv(s)
    mean, cov = mean + gain @ resid, cov - gain @ c @ cov
  return total


def test_log_likelihood_matches_a_hand_written_kalman_filter():
  params = random_lgssm_params(seed=1)
  model = LinearGaussianSSM(**params)
  x = model.sample(11, 3, seed=(1, 1)).numpy()
  a, c = params["transition_matrix"], params["observation_matrix"]
  q = np.eye(3) * 0.25
  r = np.eye(2) * 0.64
  expected = [numpy_kalman_log_likelihood(x[:, b], a, q, c, r, np.eye(3))
              for b in range(3)]
  np.testing.assert_allclose(model.log_likelihood(x), expected, rtol=1e-10)
  # A mask (True = real step) truncates the sequence.
  mask = shapes.sequence_mask([11, 6, 1], 11)
  expected = [numpy_kalman_log_likelihood(x[:n, b], a, q, c, r, np.eye(3))
              for b, n in enumerate([11, 6, 1])]
  np.testing.assert_allclose(model.log_likelihood(x, mask), expected,
                             rtol=1e-10)


def test_shapes_and_dtypes():
  params = random_lgssm_params()
  model = LinearGaussianSSM(**params, proposal="smoothing")
  assert model.dtype == tf.float64
  x = model.sample(7, 2, seed=(1, 2))
  assert x.shape == (7, 2, 2)
  context = model.prepare(x, shapes.sequence_mask([7, 4], 7))
  assert [c.shape for c in context] == [(7, 2), (7, 2, 3, 3), (7, 2, 3),
                                        (7, 2, 3, 3)]
  params["transition_matrix"] = params["transition_matrix"].astype(np.float32)
  assert LinearGaussianSSM(**params).dtype == tf.float32


def test_bad_arguments():
  params = random_lgssm_params()
  with pytest.raises(ValueError, match="proposal"):
    LinearGaussianSSM(**params, proposal="oracle")
  bad = dict(params, observation_matrix=np.zeros([2, 4]))
  with pytest.raises(ValueError, match="observation_matrix"):
    LinearGaussianSSM(**bad)
  bad = dict(params, transition_noise_scale=[1., 2.])
  with pytest.raises(ValueError, match="transition_noise_scale"):
    LinearGaussianSSM(**bad)
  bad = dict(params, initial_scale=-1.)
  with pytest.raises(ValueError, match="positive"):
    LinearGaussianSSM(**bad)
