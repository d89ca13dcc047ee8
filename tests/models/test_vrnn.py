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


def _concrete(emission="bernoulli", categories=3, **kwargs):
  return VRNN(D, hidden_size=H, latent="concrete", categories=categories,
              emission=emission,
              data_mean=np.full(D, 0.3) if emission == "bernoulli" else None,
              **kwargs)


def test_concrete_vrnn_meets_the_model_contract():
  from tests.models import contract  # pylint: disable=g-import-not-at-top
  contract.check_all(_concrete)
  # The hard twin, which evaluation uses, too (no gradient check: its
  # latents are discrete, so it is not what training differentiates).
  hard = _concrete("bernoulli").for_evaluation()
  contract.check_step_shapes(hard, "bernoulli")
  contract.check_padding_is_ignored(hard, "bernoulli")
  contract.check_seeds(hard, "bernoulli")


def test_concrete_latents_are_relaxed_in_training_and_one_hot_in_evaluation(
    tmp_path):
  model = _concrete(categories=5)
  hard = model.for_evaluation()
  assert hard is not model and hard.hard and not model.hard
  assert hard.for_evaluation() is hard and model.for_evaluation() is hard
  # The twin is not tracked: the model's variables and checkpoint are as
  # without it.
  assert len(model.trainable_variables) == len(
      _concrete(categories=5).trainable_variables)
  prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  assert not [k for k, _ in tf.train.list_variables(prefix) if "twin" in k]
  # The same variables: evaluation sees what training learned.
  assert [v.ref() for v in hard.trainable_variables] == [
      v.ref() for v in model.trainable_variables]
  x, mask = _data()
  prepared = model.prepare(x, mask)
  rnn_out, _, _ = model.transition(model.initial_state(B),
                                  prepared.lstm_inputs[0])
  relaxed, log_p, log_q = model.propose(rnn_out, prepared.proposal_inputs[0],
                                         (1, 2))
  np.testing.assert_allclose(tf.reduce_sum(relaxed, -1), 1., rtol=1e-5)
  assert np.all(relaxed.numpy().max(-1) < 1. - 1e-4)  # not one-hot
  assert np.all(np.isfinite(log_p)) and np.all(np.isfinite(log_q))
  one_hot, _, _ = hard.propose(rnn_out, prepared.proposal_inputs[0], (1, 2))
  assert set(np.unique(one_hot.numpy())) == {0., 1.}
  np.testing.assert_array_equal(tf.reduce_sum(one_hot, -1), 1.)
  # The generative model's prior (for sampling and log_joint) is hard.
  prior_draw = model.prior_distribution(rnn_out).sample(seed=(3, 4))
  assert set(np.unique(prior_draw.numpy())) == {0., 1.}
  np.testing.assert_array_equal(tf.reduce_sum(prior_draw, -1), 1.)


def test_concrete_hard_bounds_against_exact_enumeration():
  # K = 3 classes over T = 4 steps: 81 latent paths, so log p(x) is exact.
  import itertools  # pylint: disable=g-import-not-at-top
  model = _concrete(categories=3)
  hard = model.for_evaluation()
  x, _ = _data(seed=3)
  x = x[:4, :1]
  paths = np.array(list(itertools.product(range(3), repeat=4))).T  # [4, 81]
  joint = model.log_joint(tf.tile(x, [1, paths.shape[1], 1]),
                          tf.one_hot(paths, 3))
  exact = float(tf.reduce_logsumexp(joint))
  sweeps = 20000
  tiled = tf.tile(x, [1, sweeps, 1])
  for name, fn, kwargs in (
      ("iwae", bounds.iwae, {}),
      ("fivo", bounds.fivo, {"resampling": "always"})):
    values = fn(hard, tiled, num_particles=4, seed=(5, 5), **kwargs).numpy()
    # p_hat is unbiased for p(x): mean of p_hat / p(x) is 1 within 4 SE ...
    ratios = np.exp(values - exact)
    assert abs(ratios.mean() - 1.) < 4 * ratios.std() / np.sqrt(sweeps), name
    # ... so its log is a lower bound on average.
    assert values.mean() < exact, name
  elbo = bounds.elbo(hard, tiled, num_particles=1, seed=(5, 5)).numpy()
  assert elbo.mean() < values.mean()


def test_concrete_arguments_are_checked():
  with pytest.raises(ValueError, match="Unknown latent 'beta'"):
    VRNN(D, latent="beta")
  with pytest.raises(ValueError, match="categories >= 2"):
    VRNN(D, latent="concrete", categories=1)
  with pytest.raises(ValueError, match="temperature must be positive"):
    VRNN(D, latent="concrete", temperature=0.)
