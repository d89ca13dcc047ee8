import numpy as np
import pytest
import tensorflow as tf

from seqlvm import registry
from seqlvm.smc import criteria


def test_ess_of_equal_and_degenerate_weights():
  log_weights = tf.constant([[0., 0.], [0., -np.inf], [0., -np.inf],
                             [0., -np.inf]])
  np.testing.assert_allclose(criteria.effective_sample_size(log_weights),
                             [4., 1.], rtol=1e-6)


def test_ess_matches_definition():
  rng = np.random.RandomState(0)
  w = rng.randn(7, 3)
  p = np.exp(w) / np.exp(w).sum(0)
  np.testing.assert_allclose(criteria.effective_sample_size(tf.constant(w)),
                             1. / (p ** 2).sum(0), rtol=1e-10)


def test_threshold_criterion_fires_below_fraction():
  fn = criteria.ess_below_threshold(0.5)
  # ESS 4 (equal), ESS 1 (degenerate), ESS exactly 2 (two equal survivors).
  log_weights = tf.constant([[0., 0., 0.], [0., -np.inf, 0.],
                             [0., -np.inf, -np.inf], [0., -np.inf, -np.inf]])
  np.testing.assert_array_equal(fn(log_weights), [False, True, False])


def test_never_and_always():
  log_weights = tf.zeros([3, 5])
  assert not np.any(criteria.never(log_weights))
  assert np.all(criteria.always(log_weights))


@pytest.mark.parametrize("threshold", [0., -0.1, 1.5])
def test_bad_threshold(threshold):
  with pytest.raises(ValueError, match="threshold"):
    criteria.ess_below_threshold(threshold)


def test_unknown_name():
  with pytest.raises(ValueError, match="ess, always, never"):
    registry.CRITERIA.check("sometimes")


def test_registered_criteria_build_with_their_options():
  assert isinstance(registry.CRITERIA.build("never", threshold=0.3),
                    criteria.Never)
  ess = registry.CRITERIA.build("ess", threshold=0.3)
  assert isinstance(ess, criteria.EssBelowThreshold) and ess.threshold == 0.3
  assert not criteria.never.can_fire and criteria.always.can_fire
