import itertools

import numpy as np
import pytest
import tensorflow as tf

from seqlvm import bounds
from seqlvm import shapes
from seqlvm.models import heads
from seqlvm.models import wavenet
from tests.models import contract

# Deliberately distinct sizes: T, B, N, D, channels, hidden, latent.
T, B, N, D, C, H, Z = 7, 2, 4, 5, 6, 7, 3
LENGTHS = (7, 4)
DILATIONS = (1, 2, 4)
EMISSIONS = ("bernoulli", "gaussian")
# float32 sums of T log densities in a different order agree to ~1e-6
# relative; float64 to ~1e-15.
RTOL = {tf.float32: 1e-5, tf.float64: 1e-12}


def _data(emission, seed=0, num_steps=T, lengths=LENGTHS, dtype=tf.float32):
  rng = np.random.RandomState(seed)
  if emission == "bernoulli":
    x = (rng.rand(num_steps, B, D) < 0.3).astype(np.float64)
  else:
    x = rng.randn(num_steps, B, D)
  mask = shapes.sequence_mask(lengths, num_steps)
  return tf.constant(x * mask.numpy()[..., None], dtype), mask


def _wavenet(emission, dtype=tf.float32, **kwargs):
  mean = np.full(D, 0.3) if emission == "bernoulli" else np.arange(D) / 10.
  return wavenet.WaveNet(D, channels=C, dilations=DILATIONS,
                         emission=emission, data_mean=mean, dtype=dtype,
                         **kwargs)


def _vrnn_wavenet(emission, dtype=tf.float32):
  mean = np.full(D, 0.3) if emission == "bernoulli" else None
  return wavenet.VRNNWaveNet(D, hidden_size=H, latent_size=Z, channels=C,
                             dilations=DILATIONS, emission=emission,
                             data_mean=mean, dtype=dtype)


def test_wavenet_meets_the_model_contract():
  contract.check_all(lambda emission: wavenet.WaveNet(
      contract.D, channels=C, dilations=DILATIONS, num_stacks=2,
      emission=emission,
      data_mean=np.full(contract.D, 0.3) if emission == "bernoulli" else None))


def test_vrnn_wavenet_meets_the_model_contract():
  contract.check_all(lambda emission: wavenet.VRNNWaveNet(
      contract.D, hidden_size=H, latent_size=Z, channels=C,
      dilations=DILATIONS, emission=emission,
      data_mean=np.full(contract.D, 0.3) if emission == "bernoulli" else None))


def test_context_and_state_shapes():
  x, mask = _data("gaussian")
  model = _wavenet("gaussian")
  assert [c.shape for c in model.prepare(x, mask)] == [(T, B, D)] * 2
  assert model.initial_state(N * B).shape == (N * B, 0)
  model = _vrnn_wavenet("bernoulli")
  assert [c.shape for c in model.prepare(x, mask)] == [
      (T, B, 4 * H), (T, B, H), (T, B, H)]
  assert model.receptive_field == 2 + sum(DILATIONS)


@pytest.mark.parametrize("emission, dtype", [("bernoulli", tf.float32),
                                             ("gaussian", tf.float64)])
def test_every_bound_equals_the_log_likelihood(emission, dtype):
  """No latents: every particle has the same weight, so ELBO, IWAE and FIVO
  (any N, resampling or not) are the exact log p(x), padded or not."""
  model = _wavenet(emission, dtype)
  x, mask = _data(emission, dtype=dtype)
  garbage, _ = _data(emission, seed=5, num_steps=T + 5, dtype=dtype)
  padded = tf.concat([x, garbage[T:] + 3.], axis=0)
  padded_mask = shapes.sequence_mask(LENGTHS, T + 5)
  log_p = model.log_likelihood(x, mask).numpy()
  assert log_p.shape == (B,) and np.all(np.isfinite(log_p))
  rtol = RTOL[dtype]
  # The mask: each sequence alone, cut to its length.
  for b, length in enumerate(LENGTHS):
    np.testing.assert_allclose(
        model.log_likelihood(x[:length, b:b + 1]).numpy(), log_p[b:b + 1],
        rtol=rtol)
  np.testing.assert_allclose(model.log_likelihood(padded, padded_mask), log_p,
                             rtol=rtol)
  # Ragged lengths and a garbage tail: every bound, N = 1 and N > 1.
  for n in (1, N):
    for name in ("elbo", "iwae", "fivo"):
      kwargs = dict(resampling="always") if name == "fivo" else {}
      estimate = getattr(bounds, name)(model, padded, padded_mask, n,
                                       seed=(1, 2), **kwargs)
      np.testing.assert_allclose(estimate.numpy(), log_p, rtol=rtol,
                                 err_msg=f"{name}, N={n}")
  # Unpadded; FIVO's default rule (equal weights: ESS = N, it never fires).
  for kwargs in (dict(resampling="always"), {}):
    np.testing.assert_allclose(
        bounds.fivo(model, x, mask, N, seed=(3, 4), **kwargs).numpy(), log_p,
        rtol=rtol)


def test_log_likelihood_matches_the_incremental_pass():
  """log p(x) from `prepare` equals the sum of log p(x_t | x_{<t}) with the
  features from the stack's single-step pass."""
  model = _wavenet("bernoulli", tf.float64)
  x, mask = _data("bernoulli", num_steps=12, lengths=(12, 12),
                  dtype=tf.float64)
  cache = model.stack.initial_cache(B)
  previous, total = tf.zeros([B, D], tf.float64), 0.
  for t in range(12):
    feature, cache = model.stack.step(previous, cache)
    p_x = model.emission_distribution(model.emission_params(feature))
    total += p_x.log_prob(x[t])
    previous = x[t] - model.data_mean
  np.testing.assert_allclose(model.log_likelihood(x, mask), total, rtol=1e-12)


@pytest.mark.parametrize("num_stacks", [1, 2])
def test_the_stack_is_causal_with_the_stated_receptive_field(num_stacks):
  stack = wavenet.WaveNetStack(D, C, DILATIONS, num_stacks=num_stacks, seed=4)
  r = stack.receptive_field
  assert r == 2 + num_stacks * sum(DILATIONS)
  num_steps, t0 = r + 8, 3
  x = tf.random.stateless_normal([num_steps, B, D], (1, 1))
  changed = tf.tensor_scatter_nd_add(x, [[t0]], tf.ones([1, B, D]))
  before, after = stack(x).numpy(), stack(changed).numpy()
  assert before.shape == (num_steps, B, C)
  # Steps <= t0 never see x_{t0}: bitwise equal.
  np.testing.assert_array_equal(after[:t0 + 1], before[:t0 + 1])
  # Steps t0 + 1 .. t0 + R see it (the nearest and the farthest included).
  difference = np.abs(after - before).max(axis=(1, 2))
  assert np.all(difference[t0 + 1:t0 + r + 1] > 1e-6), difference
  # Later steps are out of its reach.
  np.testing.assert_array_equal(after[t0 + r + 1:], before[t0 + r + 1:])


def test_the_vrnn_wavenet_emission_sees_the_past_only():
  model = _vrnn_wavenet("bernoulli")
  x, mask = _data("bernoulli", lengths=(T, T))
  changed = tf.tensor_scatter_nd_update(x, [[2]], 1. - x[2:3])
  before = model.prepare(x, mask)[2].numpy()
  after = model.prepare(changed, mask)[2].numpy()
  np.testing.assert_array_equal(after[:3], before[:3])
  assert np.abs(after[3] - before[3]).max() > 1e-6
  # And the stack is trained through it.
  with tf.GradientTape() as tape:
    loss = -tf.reduce_sum(bounds.fivo(model, x, mask, N, seed=(1, 2)))
  grads = tape.gradient(loss, model.stack.trainable_variables)
  assert all(np.any(g.numpy() != 0.) for g in grads)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_the_incremental_pass_matches_the_full_pass(dtype):
  stack = wavenet.WaveNetStack(D, C, DILATIONS, num_stacks=2, seed=2,
                               dtype=dtype)
  num_steps = stack.receptive_field + 10
  x = tf.random.stateless_normal([num_steps, B, D], (3, 4), dtype=dtype)

  @tf.function
  def incremental(method):
    def body(t, cache, features):
      previous = x[t - 1] if t > 0 else tf.zeros([B, D], dtype)
      feature, cache = stack.step(previous, cache)
      return t + 1, cache, features.write(t, feature)

    _, _, features = tf.while_loop(
        lambda t, *_: t < num_steps, body,
        (tf.constant(0), stack.initial_cache(B, method, num_steps),
         tf.TensorArray(dtype, size=num_steps)))
    return features.stack()

  full = stack(x).numpy()
  atol = {tf.float32: 1e-6, tf.float64: 1e-13}[dtype]
  for method in wavenet.SAMPLING_METHODS:
    np.testing.assert_allclose(incremental(method), full, rtol=RTOL[dtype],
                               atol=atol, err_msg=method)


@pytest.mark.parametrize("emission", EMISSIONS)
@pytest.mark.parametrize("make", [_wavenet, _vrnn_wavenet],
                         ids=["wavenet", "vrnn_wavenet"])
def test_cached_and_naive_sampling_agree(make, emission):
  model = make(emission)
  sample = tf.function(
      lambda method: model.sample(15, 3, seed=(7, 8), return_means=True,
                                  method=method))
  x_cached, means_cached = sample("cached")
  x_naive, means_naive = sample("naive")
  assert x_cached.shape == (15, 3, D)
  if emission == "bernoulli":
    np.testing.assert_array_equal(x_naive, x_cached)
  else:
    np.testing.assert_allclose(x_naive, x_cached, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(means_naive, means_cached, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("emission", EMISSIONS)
def test_samples_follow_the_likelihood(emission):
  """The emission means of `sample` are those `prepare` gives the samples."""
  model = _wavenet(emission)
  x, means = model.sample(12, B, seed=(2, 3), return_means=True)
  params = model.prepare(x, shapes.sequence_mask([12] * B, 12))
  np.testing.assert_allclose(model.emission_distribution(params).mean(), means,
                             rtol=1e-5, atol=1e-6)


def test_training_step_compiles_with_xla():
  """The runners' default: the sweep and its gradient in one XLA function
  (the VRNN-WaveNet adds only the stack and an offset to the VRNN; its
  compile takes ~17 s, so only the WaveNet is compiled here)."""
  model = _wavenet("bernoulli")
  x, mask = _data("bernoulli")

  @tf.function(jit_compile=True)
  def step(x, mask):
    with tf.GradientTape() as tape:
      bound = bounds.fivo(model, x, mask, N, seed=(1, 2))
      loss = -tf.reduce_sum(bound)
    return bound, tape.gradient(loss, model.trainable_variables)

  bound, grads = step(x, mask)
  np.testing.assert_allclose(bound, model.log_likelihood(x, mask), rtol=1e-5)
  for v, g in zip(model.trainable_variables, grads):
    assert g is not None and np.all(np.isfinite(g.numpy())), v.name
    assert np.any(g.numpy() != 0.), v.name


def test_emission_bias_starts_at_the_mean():
  mean = np.full(D, 0.3)
  np.testing.assert_allclose(_wavenet("bernoulli").emission.net.out.b.numpy(),
                             heads.logit(mean), rtol=1e-5)
  np.testing.assert_allclose(
      _vrnn_wavenet("bernoulli").emission.net.out.b.numpy(), heads.logit(mean),
      rtol=1e-5)
  np.testing.assert_allclose(
      _wavenet("gaussian").emission.net.out.b.numpy()[:D], np.arange(D) / 10.,
      rtol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match="emission"):
    wavenet.WaveNet(D, emission="poisson")
  with pytest.raises(ValueError, match="data_mean"):
    wavenet.WaveNet(D, data_mean=np.zeros(D + 1))
  with pytest.raises(ValueError, match="dilations"):
    wavenet.WaveNet(D, dilations=())
  with pytest.raises(ValueError, match="dilations"):
    wavenet.VRNNWaveNet(D, dilations=(1, 0))
  with pytest.raises(ValueError, match="channels"):
    wavenet.WaveNetStack(D, channels=0)
  with pytest.raises(ValueError, match="num_steps"):
    wavenet.WaveNetStack(D).initial_cache(B, "naive")
  with pytest.raises(ValueError, match="sampling method"):
    _wavenet("bernoulli").sample(3, B, method="fast")
  with pytest.raises(ValueError, match="sampling method"):
    _vrnn_wavenet("bernoulli").sample(3, B, method="fast")


def test_wavenet_likelihood_is_normalised_over_all_binary_sequences():
  # Every x in {0, 1}^(T x D) for T = 3, D = 2: the probabilities sum to 1
  # only if step t's emission sees x_{<t} alone.
  model = wavenet.WaveNet(2, channels=4, dilations=(1, 2), seed=3,
                  data_mean=np.array([0.3, 0.6]))
  sequences = np.array(list(itertools.product([0., 1.], repeat=6)),
                       np.float32).reshape(-1, 3, 2)
  x = tf.constant(np.transpose(sequences, [1, 0, 2]))  # [T, 64, D]
  total = np.exp(model.log_likelihood(x).numpy().astype(np.float64)).sum()
  np.testing.assert_allclose(total, 1., rtol=1e-5)


def test_vrnn_wavenet_with_a_concrete_latent():
  # Shares the VRNN's latent step: relaxed in training (the contract,
  # gradients included) and hard in evaluation, exact by enumeration.
  def make(emission):
    return wavenet.VRNNWaveNet(
        contract.D, hidden_size=5, channels=3, dilations=(1, 2),
        emission=emission, latent="concrete", categories=3)

  contract.check_step_shapes(make("bernoulli"), "bernoulli")
  contract.check_gradients(make("gaussian"), "gaussian")
  model = make("bernoulli")
  hard = model.for_evaluation()
  x = tf.constant((np.random.RandomState(2).rand(3, 1, contract.D) < 0.4),
                  tf.float32)
  paths = np.array(list(itertools.product(range(3), repeat=3))).T  # [3, 27]
  joint = model.log_joint(tf.tile(x, [1, 27, 1]), tf.one_hot(paths, 3))
  exact = float(tf.reduce_logsumexp(joint))
  sweeps = 20000
  values = bounds.iwae(hard, tf.tile(x, [1, sweeps, 1]), num_particles=3,
                       seed=(2, 2)).numpy()
  ratios = np.exp(values - exact)
  assert abs(ratios.mean() - 1.) < 4 * ratios.std() / np.sqrt(sweeps)
  assert values.mean() < exact
