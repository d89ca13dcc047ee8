import numpy as np
import pytest
import tensorflow as tf

from seqlvm import bounds
from seqlvm import shapes
from seqlvm.models import VRNN
from seqlvm.models import heads

T, B, N, D, H, Z = 7, 2, 3, 5, 6, 4
LENGTHS = (7, 4)


def _data(seed=0):
  rng = np.random.RandomState(seed)
  x = (rng.rand(T, B, D) < 0.3).astype(np.float32)
  mask = shapes.sequence_mask(LENGTHS, T)
  x = x * mask.numpy()[..., None]
  return tf.constant(x), mask


@pytest.fixture
def model():
  return VRNN(D, hidden_size=H, latent_size=Z, data_mean=np.full(D, 0.3))


def test_contract_shapes(model):
  x, mask = _data()
  prepared = model.prepare(x, mask)
  assert [c.shape for c in prepared] == [(T, B, 4 * H), (T, B, H)]
  state = model.initial_state(N * B)
  assert [s.shape for s in state] == [(N * B, H)] * 3
  context_t = tf.nest.map_structure(lambda c: shapes.tile_particles(c[0], N),
                                    prepared)
  out = model.step(state, context_t, shapes.tile_particles(x[0], N), (1, 2))
  assert [s.shape for s in out.state] == [(N * B, H)] * 3
  for value in (out.log_p_z, out.log_p_x_given_z, out.log_q_z):
    assert value.shape == (N * B,)
  for fn in (bounds.elbo, bounds.iwae, bounds.fivo):
    assert fn(model, x, mask, num_particles=N, seed=(1, 1)).shape == (B,)


def test_emission_bias_starts_at_logit_of_mean(model):
  np.testing.assert_allclose(model.emission.net.out.b.numpy(),
                             heads.logit(np.full(D, 0.3)), rtol=1e-5)
  gaussian = VRNN(D, H, Z, emission="gaussian", data_mean=np.arange(D) / 10.)
  np.testing.assert_allclose(gaussian.emission.net.out.b.numpy()[:D],
                             np.arange(D) / 10., rtol=1e-6)


@pytest.mark.parametrize("emission", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("bound", ["elbo", "iwae", "fivo"])
def test_gradients_exist_and_are_finite(emission, bound):
  model = VRNN(D, H, Z, emission=emission)
  x, mask = _data()
  if emission == "gaussian":
    x = tf.random.stateless_normal([T, B, D], (1, 3))
  kwargs = dict(resampling="always") if bound == "fivo" else {}
  with tf.GradientTape() as tape:
    loss = -tf.reduce_sum(getattr(bounds, bound)(
        model, x, mask, num_particles=N, seed=(2, 2), **kwargs))
  grads = tape.gradient(loss, model.trainable_variables)
  names = [v.name for v in model.trainable_variables]
  assert len(grads) == 22
  for name, g in zip(names, grads):
    assert g is not None, name
    assert np.all(np.isfinite(g.numpy())), name
    assert np.any(g.numpy() != 0.), name


def test_padding_and_seeds(model):
  x, mask = _data()
  padded = tf.concat([x, tf.ones([4, B, D])], 0)
  padded_mask = shapes.sequence_mask(LENGTHS, T + 4)
  for fn in (bounds.elbo, bounds.iwae, bounds.fivo):
    a = fn(model, x, mask, num_particles=N, seed=(4, 5))
    np.testing.assert_allclose(
        fn(model, padded, padded_mask, num_particles=N, seed=(4, 5)), a,
        rtol=1e-5)
    np.testing.assert_array_equal(
        fn(model, x, mask, num_particles=N, seed=(4, 5)), a)


def test_sample_shapes_and_reproducibility(model):
  x, means = model.sample(9, 3, seed=(1, 2), return_means=True)
  assert x.shape == (9, 3, D) and means.shape == (9, 3, D)
  assert set(np.unique(x.numpy())) <= {0., 1.}
  assert np.all((means.numpy() > 0) & (means.numpy() < 1))
  np.testing.assert_array_equal(model.sample(9, 3, seed=(1, 2)), x)


def test_bad_arguments():
  with pytest.raises(ValueError, match="emission"):
    VRNN(D, emission="poisson")
  with pytest.raises(ValueError, match="data_mean"):
    VRNN(D, data_mean=np.zeros(D + 1))
  with pytest.raises(ValueError, match="hidden_size"):
    VRNN(D, hidden_size=0)


def test_vrnn_meets_the_model_contract():
  from tests.models import contract  # pylint: disable=g-import-not-at-top
  contract.check_all(lambda emission: VRNN(
      contract.D, hidden_size=6, latent_size=4, emission=emission,
      data_mean=np.full(contract.D, 0.3) if emission == "bernoulli" else None))
