import numpy as np
import pytest
import tensorflow as tf

from seqlvm import shapes
from seqlvm.models import heads
from seqlvm.models.draw import DRAW
from seqlvm.smc import filter as filter_lib
from tests.models import contract

T, B, N, D, H, Z = 7, 2, 3, 5, 6, 4
LENGTHS = (7, 4)


def _data(seed=0, num_steps=T):
  rng = np.random.RandomState(seed)
  x = (rng.rand(num_steps, B, D) < 0.3).astype(np.float32)
  return tf.constant(x), shapes.sequence_mask(LENGTHS, num_steps)


def _model(emission="bernoulli"):
  return DRAW(D, hidden_size=H, latent_size=Z, emission=emission,
              data_mean=np.full(D, 0.3) if emission == "bernoulli" else None)


def _first_step_inputs(model, x, mask):
  """context_t and x_t of step 0, tiled to N*B rows as the sweep does."""
  context = model.prepare(x, mask)
  return (tf.nest.map_structure(lambda c: shapes.tile_particles(c[0], N),
                                context),
          shapes.tile_particles(x[0], N))


def _random_state(seed):
  """A state `[N*B, ...]` with nonzero parts, as after some steps."""
  parts = [tf.random.stateless_uniform([N * B, size], (seed, i), -0.9, 0.9)
           for i, size in enumerate((H, H, H, H, D))]
  return tuple(parts)


def test_draw_meets_the_model_contract():
  contract.check_all(_model)


@pytest.mark.parametrize("emission", ["bernoulli", "gaussian"])
def test_exact_shapes_of_context_and_state(emission):
  model = _model(emission)
  x, mask = _data()
  prepared = model.prepare(x, mask)
  assert [c.shape for c in prepared] == [(T, B, 4 * H), (T, B, 4 * H)]
  state = model.initial_state(N * B)
  expected = [(N * B, H)] * 4 + [(N * B, D)]  # h_dec, c_dec, h_enc, c_enc, c
  assert [s.shape for s in state] == expected
  context_t, x_t = _first_step_inputs(model, x, mask)
  out = model.step(state, context_t, x_t, (1, 2))
  assert [s.shape for s in out.state] == expected
  for value in (out.log_p_z, out.log_p_x_given_z, out.log_q_z):
    assert value.shape == (N * B,)


def test_canvas_is_written_additively():
  model = _model()
  x, mask = _data()
  context_t, x_t = _first_step_inputs(model, x, mask)
  state = _random_state(1)
  forget = tf.sigmoid(model.canvas_forget_logit)
  np.testing.assert_allclose(forget.numpy(), 0.95, rtol=1e-6)
  out = model.step(state, context_t, x_t, (1, 2))
  # c_t = f * c_{t-1} + W_write h_dec_t.
  np.testing.assert_allclose(
      out.state[4].numpy(),
      (forget * state[4] + model.write(out.state[0])).numpy(), rtol=1e-5,
      atol=1e-6)
  # Write zeroed and f = 1 (sigmoid(50) rounds to 1): the canvas keeps its
  # value over a whole sweep, and the zero initial canvas stays zero.
  model.write.w.assign(tf.zeros_like(model.write.w))
  model.write.b.assign(tf.zeros_like(model.write.b))
  model.canvas_forget_logit.assign(tf.fill([D], 50.))
  out = model.step(state, context_t, x_t, (1, 2))
  np.testing.assert_array_equal(out.state[4], state[4])
  result = filter_lib.smc(model, x, mask, num_particles=N, seed=(3, 4))
  np.testing.assert_array_equal(result.final_state[4], tf.zeros([N * B, D]))


def test_encoder_reads_the_previous_decoder_state():
  # DRAW's feedback loop: h_enc_t depends on h_dec_{t-1}, so q does.
  model = _model()
  x, mask = _data()
  context_t, x_t = _first_step_inputs(model, x, mask)
  state = _random_state(2)
  perturbed = (state[0] + 0.5,) + state[1:]  # h_dec only; canvas unchanged.
  a = model.step(state, context_t, x_t, (1, 2))
  b = model.step(perturbed, context_t, x_t, (1, 2))
  assert not np.allclose(a.state[2], b.state[2])  # h_enc_t
  q_a = model.proposal.params(a.state[2])
  q_b = model.proposal.params(b.state[2])
  assert not np.allclose(q_a[0], q_b[0]) and not np.allclose(q_a[1], q_b[1])
  assert not np.allclose(a.log_q_z, b.log_q_z)
  # Zeroing the encoder's h_dec columns cuts the loop.
  w = model.encoder.kernel.w
  w.assign(tf.concat([w[:2 * D], tf.zeros([H, 4 * H]), w[2 * D + H:]], 0))
  a = model.step(state, context_t, x_t, (1, 2))
  b = model.step(perturbed, context_t, x_t, (1, 2))
  np.testing.assert_array_equal(a.state[2], b.state[2])


def test_prior_is_learned_from_the_decoder_state():
  model = _model()
  x, mask = _data()
  context_t, x_t = _first_step_inputs(model, x, mask)
  # A proposal that ignores h_enc, so both steps draw the same z.
  out_layer = model.proposal.net.out
  out_layer.w.assign(tf.zeros_like(out_layer.w))
  state = _random_state(3)
  perturbed = (state[0] + 0.5,) + state[1:]
  a = model.step(state, context_t, x_t, (1, 2))
  b = model.step(perturbed, context_t, x_t, (1, 2))
  np.testing.assert_array_equal(a.log_q_z, b.log_q_z)
  assert not np.allclose(a.log_p_z, b.log_p_z)
  z = model.proposal(state[2]).sample(seed=(1, 2))
  for s, out in ((state, a), (perturbed, b)):
    np.testing.assert_allclose(out.log_p_z,
                               model.prior(s[0]).log_prob(z), rtol=1e-5)


def test_canvas_stays_bounded_over_long_sequences():
  # |c| <= max |W_write h + b| / (1 - f), as |h_dec| < 1.
  model = _model()
  x, _ = _data(num_steps=2000)
  sweep = tf.function(lambda x: filter_lib.smc(model, x, num_particles=N,
                                               seed=(5, 6)))
  result = sweep(x)
  assert np.all(np.isfinite(result.log_marginal.numpy()))
  forget = tf.sigmoid(model.canvas_forget_logit)
  limit = (tf.reduce_sum(tf.abs(model.write.w), 0) +
           tf.abs(model.write.b)) / (1. - forget)
  assert np.all(np.abs(result.final_state[4].numpy()) <= limit.numpy())


def test_emission_bias_starts_at_the_data_mean():
  np.testing.assert_allclose(_model().emission_bias.numpy(),
                             heads.logit(np.full(D, 0.3)), rtol=1e-5)
  gaussian = DRAW(D, H, Z, emission="gaussian", data_mean=np.arange(D) / 10.)
  np.testing.assert_allclose(gaussian.emission_bias.numpy(),
                             np.arange(D) / 10., rtol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match="emission"):
    DRAW(D, emission="poisson")
  with pytest.raises(ValueError, match="data_mean"):
    DRAW(D, data_mean=np.zeros(D + 1))
  with pytest.raises(ValueError, match="latent_size"):
    DRAW(D, latent_size=0)


def test_decoder_reads_the_previous_observation_only():
  model = _model()
  x, mask = _data()
  k = 3
  changed = x.numpy().copy()
  changed[k, 0] = 1. - changed[k, 0]
  before = model.prepare(x, mask)
  after = model.prepare(tf.constant(changed), mask)
  # The decoder's input at step t is phi(x_{t-1}): unchanged up to k.
  np.testing.assert_array_equal(after[0][:k + 1], before[0][:k + 1])
  assert not np.allclose(after[0][k + 1, 0], before[0][k + 1, 0])
  # The encoder reads x_t itself.
  assert not np.allclose(after[1][k, 0], before[1][k, 0])
  np.testing.assert_array_equal(after[1][:k], before[1][:k])
