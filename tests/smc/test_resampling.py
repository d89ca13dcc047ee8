"""Resampling schemes: offspring means, zero-probability classes, sizes."""

import numpy as np
import pytest
import tensorflow as tf

from seqlvm import bounds
from seqlvm import registry
from seqlvm.smc import resampling

SCHEMES = sorted(registry.SCHEMES)


def _offspring_counts(ancestors, num_particles):
  # ancestors [N, B] -> counts [B, N]
  a = np.asarray(ancestors).T
  return np.stack([np.bincount(row, minlength=num_particles) for row in a])


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dynamic", [False, True])
def test_mean_offspring_and_zero_probability(scheme, dynamic):
  probs = np.array([0.1, 0., 0.45, 0.25, 0.2])
  n, b = len(probs), 4000
  with np.errstate(divide="ignore"):
    log_probs = np.log(probs)
  log_weights = tf.constant(np.tile(log_probs[:, None], [1, b]) + 3.)
  fn = registry.SCHEMES.load(scheme)
  if dynamic:  # Unknown batch size: TFP's algorithm on dynamic shapes.
    fn = tf.function(fn, input_signature=[
        tf.TensorSpec([n, None], tf.float64), tf.TensorSpec([2], tf.int32)])
  ancestors = fn(log_weights, tf.constant([4, 2]))
  assert ancestors.shape == (n, b) and ancestors.dtype == tf.int32
  counts = _offspring_counts(ancestors, n)
  assert np.all(counts[:, 1] == 0)  # a zero-weight particle is never chosen
  mean = counts.mean(0)
  # Each count has variance at most n p (1 - p); 5 standard errors.
  se = np.sqrt(n * probs * (1 - probs) / b)
  np.testing.assert_array_less(np.abs(mean - n * probs), 5 * se + 1e-12)


@pytest.mark.parametrize("scheme", ["multinomial", "systematic", "stratified"])
def test_unknown_batch_size_draws_the_static_shape_ancestors(scheme):
  """A tf.function traced with an unknown batch size (the compiled public
  bounds) draws exactly the ancestors of TFP's static-shape resamplers."""
  rng = np.random.RandomState(3)
  log_weights = rng.randn(5, 6) * 3.
  log_weights[1, :3] = -np.inf  # zero-weight particles
  fn = registry.SCHEMES.load(scheme)
  for dtype in (tf.float32, tf.float64):
    dynamic = tf.function(fn, input_signature=[
        tf.TensorSpec([5, None], dtype), tf.TensorSpec([2], tf.int32)])
    for seed in range(4):
      static = fn(tf.constant(log_weights, dtype), tf.constant([seed, 1]))
      np.testing.assert_array_equal(
          dynamic(tf.constant(log_weights, dtype), tf.constant([seed, 1])),
          static)
      assert np.all(static.numpy()[:, :3] != 1)


@pytest.mark.parametrize("scheme", ["systematic", "stratified"])
def test_low_variance_schemes_keep_counts_near_expectation(scheme):
  # Systematic and stratified resampling give each particle floor(N p) or
  # ceil(N p) (systematic) / within +-2 of N p (stratified) offspring.
  probs = np.array([0.1, 0.3, 0.35, 0.25])
  n, b = 4, 500
  log_weights = tf.constant(np.tile(np.log(probs)[:, None], [1, b]))
  counts = _offspring_counts(registry.SCHEMES.load(scheme)(log_weights, (1, 1)), n)
  assert np.all(np.abs(counts - n * probs) < 2.)
  if scheme == "systematic":
    assert np.all(np.abs(counts - n * probs) < 1.)


@pytest.mark.parametrize("num_particles", [1, 2, 7, 31])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_sizes(num_particles, scheme):
  log_weights = tf.random.stateless_normal([num_particles, 3], (1, 2))
  ancestors = registry.SCHEMES.load(scheme)(log_weights, (3, 4))
  assert ancestors.shape == (num_particles, 3)
  assert np.all((ancestors.numpy() >= 0) & (ancestors.numpy() < num_particles))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_ancestors(scheme):
  log_weights = tf.random.stateless_normal([6, 4], (1, 2))
  fn = registry.SCHEMES.load(scheme)
  np.testing.assert_array_equal(fn(log_weights, (5, 6)),
                                fn(log_weights, (5, 6)))


def test_unknown_scheme():
  with pytest.raises(ValueError, match="multinomial, systematic, stratified"):
    registry.SCHEMES.load("residual-ish")
  with pytest.raises(ValueError, match="multinomial, systematic, stratified"):
    bounds.fivo(None, tf.zeros([2, 1, 1]), scheme="residual-ish")


def test_low_variance_schemes_have_lower_offspring_variance():
  # Multinomial counts are binomial(N, p_k): variance N p_k (1 - p_k). The
  # other schemes keep the mean N p_k with less spread: systematic and
  # stratified by stratifying the uniforms, residual by drawing only
  # R = N - sum floor(N p_k) of the ancestors.
  probs = np.array([0.05, 0.3, 0.15, 0.22, 0.08, 0.2])
  n, b = len(probs), 20000
  log_weights = tf.constant(np.tile(np.log(probs)[:, None], [1, b]))
  variances = {}
  for scheme in SCHEMES:
    counts = _offspring_counts(registry.SCHEMES.load(scheme)(log_weights, (9, 9)), n)
    se = np.sqrt(n * probs * (1 - probs) / b)
    np.testing.assert_array_less(np.abs(counts.mean(0) - n * probs), 5 * se)
    variances[scheme] = counts.var(0).sum()
  multinomial = (n * probs * (1 - probs)).sum()
  np.testing.assert_allclose(variances["multinomial"], multinomial, rtol=0.05)
  for scheme in ("systematic", "stratified", "residual"):
    assert variances[scheme] < 0.7 * multinomial, (scheme, variances)
  # Systematic is the least spread: each count is floor or ceil of N p_k.
  assert variances["systematic"] <= min(variances.values())


def test_residual_copies_the_integer_part():
  # N p = [2.2, 1.4, 0.4, 0]: particle 0 gets its 2 copies and maybe one
  # more, particle 1 one or two, particle 2 zero or one, particle 3 none;
  # only R = 1 ancestor is random.
  probs = np.array([0.55, 0.35, 0.1, 0.])
  with np.errstate(divide="ignore"):
    log_probs = np.log(probs)
  b = 4000
  log_weights = tf.constant(np.tile(log_probs[:, None], [1, b]) - 7.)
  counts = _offspring_counts(resampling.residual(log_weights, (2, 3)), 4)
  assert set(counts[:, 0]) == {2, 3} and set(counts[:, 1]) == {1, 2}
  assert set(counts[:, 2]) == {0, 1} and np.all(counts[:, 3] == 0)
  assert np.all(counts.sum(1) == 4)
  # The random ancestor follows the residuals 0.2 : 0.4 : 0.4.
  se = np.sqrt(0.25 / b)
  np.testing.assert_allclose(counts.mean(0), 4 * probs, atol=5 * se)
