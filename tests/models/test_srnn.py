import numpy as np
import pytest
import tensorflow as tf

from seqlvm import bounds
from seqlvm import shapes
from seqlvm.models import heads
from seqlvm.models.srnn import SRNN
from tests.models import contract

T, B, N, D, H, Z = 7, 2, 3, 5, 6, 4
LENGTHS = (7, 4)


def _data(seed=0):
  rng = np.random.RandomState(seed)
  x = (rng.rand(T, B, D) < 0.3).astype(np.float32)
  mask = shapes.sequence_mask(LENGTHS, T)
  return x * mask.numpy()[..., None], mask


def _with(x, t, b, value):
  """A copy of numpy `x` with x[t, b] = value."""
  x = x.copy()
  x[t, b] = value
  return tf.constant(x)


@pytest.fixture
def model():
  return SRNN(D, hidden_size=H, latent_size=Z, data_mean=np.full(D, 0.3))


def test_srnn_meets_the_model_contract():
  contract.check_all(lambda emission: SRNN(
      contract.D, hidden_size=6, latent_size=4, emission=emission,
      data_mean=np.full(contract.D, 0.3) if emission == "bernoulli" else None))


def test_prepare_and_step_shapes(model):
  x, mask = _data()
  d, a = model.deterministic_states(x, mask)
  assert d.shape == (T, B, H) and a.shape == (T, B, H)
  context = model.prepare(x, mask)
  assert [c.shape for c in context] == [(T, B, H)] * 3
  # The context is the d_t and a_t parts of the heads' first layers.
  np.testing.assert_allclose(
      context.prior_inputs, tf.einsum("tbh,hk->tbk", d,
                                      model.prior.net.layers[0].w[Z:]),
      rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
      context.proposal_inputs, tf.einsum("tbh,hk->tbk", a,
                                         model.proposal.net.layers[0].w[Z:]),
      rtol=1e-5, atol=1e-6)
  state = model.initial_state(N * B)
  assert state.shape == (N * B, Z)
  context_t = tf.nest.map_structure(lambda c: shapes.tile_particles(c[0], N),
                                    context)
  out = model.step(state, context_t, shapes.tile_particles(x[0], N), (1, 2))
  assert out.state.shape == (N * B, Z)
  for value in (out.log_p_z, out.log_p_x_given_z, out.log_q_z):
    assert value.shape == (N * B,)


def test_forward_rnn_and_emission_are_causal(model):
  x, mask = _data()
  d, _ = model.deterministic_states(x, mask)
  k = 3
  changed, _ = model.deterministic_states(_with(x, k, 0, 1. - x[k, 0]), mask)
  # d_t depends on x_{<t} only: d_{<=k} unchanged, d_{k+1} changed.
  np.testing.assert_array_equal(changed[:k + 1], d[:k + 1])
  assert not np.allclose(changed[k + 1, 0], d[k + 1, 0])
  np.testing.assert_array_equal(changed[:, 1], d[:, 1])
  # The prior's and the emission's inputs at step t see x_{<t} only (the
  # proposal's look ahead by design).
  context = model.prepare(x, mask)
  perturbed = model.prepare(_with(x, k, 0, 1. - x[k, 0]), mask)
  for name in ("prior_inputs", "emission_inputs"):
    before, after = getattr(context, name), getattr(perturbed, name)
    np.testing.assert_array_equal(after[:k + 1], before[:k + 1])
    assert not np.allclose(after[k + 1, 0], before[k + 1, 0]), name


def test_backward_rnn_looks_ahead_and_skips_padding(model):
  x, mask = _data()
  d, a = model.deterministic_states(x, mask)
  k = 5
  changed_d, changed = model.deterministic_states(
      _with(x, k, 0, 1. - x[k, 0]), mask)
  # d_{<=k} does not see x_k, yet every a_{<=k} does: through the backward
  # recursion alone. (Past k, d_t carries x_k forward, so a_t changes too.)
  np.testing.assert_array_equal(changed_d[:k + 1], d[:k + 1])
  for t in range(k + 1):
    assert not np.allclose(changed[t, 0], a[t, 0]), t
  np.testing.assert_array_equal(changed[:, 1], a[:, 1])
  # Sequence 1 has length 4: garbage on its padded step 5 reaches no real
  # step, and a stays at its initial value (zero) on the padding.
  garbage = _with(x, 5, 1, 3.)
  _, padded_a = model.deterministic_states(garbage, mask)
  np.testing.assert_array_equal(padded_a, a)
  np.testing.assert_array_equal(a[LENGTHS[1]:, 1], 0.)
  context, garbage_context = model.prepare(x, mask), model.prepare(garbage,
                                                                   mask)
  for c, g in zip(context, garbage_context):
    np.testing.assert_array_equal(g[:LENGTHS[1], 1], c[:LENGTHS[1], 1])


def test_residual_posterior_off_and_under_tf_function():
  x, mask = _data()
  plain = SRNN(D, H, Z, residual_posterior=False)
  resq = SRNN(D, H, Z)
  a = bounds.fivo(plain, x, mask, num_particles=N, seed=(4, 5))
  b = bounds.fivo(resq, x, mask, num_particles=N, seed=(4, 5))
  assert np.all(np.isfinite(a)) and not np.allclose(a, b)
  compiled = tf.function(lambda x, mask: bounds.iwae(
      plain, x, mask, num_particles=N, seed=(4, 5)))
  np.testing.assert_allclose(
      compiled(tf.constant(x), mask),
      bounds.iwae(plain, x, mask, num_particles=N, seed=(4, 5)), rtol=1e-5)
  with tf.GradientTape() as tape:
    loss = -tf.reduce_sum(bounds.iwae(plain, x, mask, num_particles=N,
                                      seed=(2, 2)))
  grads = tape.gradient(loss, plain.trainable_variables)
  assert all(g is not None for g in grads)


def test_emission_bias_starts_at_the_mean(model):
  np.testing.assert_allclose(model.emission.net.out.b.numpy(),
                             heads.logit(np.full(D, 0.3)), rtol=1e-5)
  gaussian = SRNN(D, H, Z, emission="gaussian", data_mean=np.arange(D) / 10.)
  np.testing.assert_allclose(gaussian.emission.net.out.b.numpy()[:D],
                             np.arange(D) / 10., rtol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match="emission"):
    SRNN(D, emission="poisson")
  with pytest.raises(ValueError, match="data_mean"):
    SRNN(D, data_mean=np.zeros(D + 1))
  with pytest.raises(ValueError, match="hidden_size"):
    SRNN(D, hidden_size=0)
  with pytest.raises(ValueError, match="latent_size"):
    SRNN(D, latent_size=0)
