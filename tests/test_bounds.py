"""The bounds against the exact answer of a linear-Gaussian model.

Each test replicates one observed sequence across the batch, so each batch
column is an independent sweep over the same x and one call gives many
independent estimates.
"""

import numpy as np
import pytest
import tensorflow as tf

from seqlvm import bounds
from seqlvm import shapes
from seqlvm.models import LinearGaussianSSM
from seqlvm.smc import criteria
from seqlvm.smc import filter as filter_lib
from tests.conftest import random_lgssm_params


def _model(proposal, dtype=np.float64, seed=0, observation_noise_scale=None,
           **kwargs):
  params = random_lgssm_params(seed=seed, **kwargs)
  if observation_noise_scale is not None:
    params["observation_noise_scale"] = observation_noise_scale
  params["transition_matrix"] = params["transition_matrix"].astype(dtype)
  return LinearGaussianSSM(proposal=proposal, **params)


def _observation(model, num_steps, seed=(7, 7)):
  return model.sample(num_steps, 1, seed=seed)  # [T, 1, Dx]


def _replicate(x, copies):
  return tf.tile(x, [1, copies, 1])


class _Base:
  dtype = None
  rtol = None

  def test_smoothing_proposal_is_exact_for_elbo_and_iwae(self):
    model = _model("smoothing", dtype=self.dtype, latent_size=4, data_size=3)
    x = model.sample(9, 5, seed=(3, 4))  # five different sequences
    exact = model.log_likelihood(x).numpy()
    for fn in (bounds.elbo, bounds.iwae):
      for num_particles in (1, 3):
        estimate = fn(model, x, num_particles=num_particles, seed=(1, 2))
        # Zero variance: every particle's path weight is p(x) exactly.
        np.testing.assert_allclose(estimate, exact, rtol=self.rtol)

  def test_smoothing_proposal_exact_with_ragged_lengths(self):
    model = _model("smoothing", dtype=self.dtype)
    x = model.sample(8, 3, seed=(5, 6))
    lengths = [8, 5, 1]
    mask = shapes.sequence_mask(lengths, 8)
    exact = model.log_likelihood(x, mask).numpy()
    np.testing.assert_allclose(bounds.iwae(model, x, mask, seed=(1, 1)),
                               exact, rtol=self.rtol)
    for b, n in enumerate(lengths):  # the same as the truncated sequence
      np.testing.assert_allclose(
          model.log_likelihood(x[:n, b:b + 1]).numpy()[0], exact[b],
          rtol=self.rtol)


class TestFloat64(_Base):
  dtype = np.float64
  rtol = 1e-9


class TestFloat32(_Base):
  dtype = np.float32
  rtol = 1e-4


del _Base


@pytest.mark.parametrize("proposal", ["bootstrap", "filtering"])
@pytest.mark.parametrize("bound", ["iwae", "fivo"])
def test_particle_estimate_is_unbiased(proposal, bound):
  """E[p_hat] = p(x): the mean of p_hat / p(x) over M sweeps is 1.

  M = 4000 sweeps of N = 4 particles over T = 8 steps. The tolerance is five
  standard errors of the mean ratio (estimated from the same sweeps). The
  ratio is heavy-tailed (its variance grows exponentially with T without
  resampling), so the model is chosen with a noisy observation (scale 2) that
  keeps its standard deviation near 1 to 2.3: the test then resolves a bias
  of about 5 per cent. More sweeps shrink that as 1 / sqrt(M).
  """
  model = _model(proposal, observation_noise_scale=2.0)
  x = _observation(model, 8)
  exact = model.log_likelihood(x).numpy()[0]
  num_sweeps = 4000
  fn = getattr(bounds, bound)
  estimates = fn(model, _replicate(x, num_sweeps), num_particles=4,
                 seed=(11, 12)).numpy()
  ratio = np.exp(estimates - exact)
  standard_error = ratio.std() / np.sqrt(num_sweeps)
  assert abs(ratio.mean() - 1.) < 5 * standard_error + 1e-3, (
      ratio.mean(), standard_error)
  # log-mean-exp of the estimates approaches log p(x) ...
  log_mean = np.log(np.mean(np.exp(estimates - exact))) + exact
  assert abs(log_mean - exact) < 5 * standard_error / max(ratio.mean(), .5)
  # ... while each bound's mean stays below it (Jensen), by many SEs.
  mean_se = estimates.std() / np.sqrt(num_sweeps)
  assert estimates.mean() < exact - 3 * mean_se


@pytest.mark.parametrize("proposal", ["bootstrap", "filtering"])
def test_bounds_order_and_tighten_with_particles(proposal):
  model = _model(proposal)
  x = _replicate(_observation(model, 12), 1500)
  exact = model.log_likelihood(x[:, :1]).numpy()[0]
  mean = lambda fn, **kw: float(np.mean(fn(model, x, seed=(5, 5), **kw)))
  elbo = mean(bounds.elbo, num_particles=4)
  iwae = {n: mean(bounds.iwae, num_particles=n) for n in (2, 16)}
  fivo = {n: mean(bounds.fivo, num_particles=n) for n in (2, 16)}
  # Differences between these means are far larger than their standard
  # errors (about 0.02 nats with 1500 sweeps).
  assert elbo < iwae[2] < iwae[16] < exact
  assert fivo[2] < fivo[16] < exact
  assert elbo < fivo[2]


def test_fivo_with_one_particle_equals_the_elbo():
  model = _model("bootstrap")
  x = model.sample(10, 6, seed=(1, 9))
  elbo = bounds.elbo(model, x, num_particles=1, seed=(3, 3))
  for rule in ("always", "ess", "never"):
    fivo = bounds.fivo(model, x, num_particles=1, resampling=rule,
                       seed=(3, 3))
    np.testing.assert_allclose(fivo, elbo, rtol=1e-12)


def test_iwae_never_resamples_and_is_fivo_without_resampling():
  model = _model("bootstrap")
  x = model.sample(15, 4, seed=(2, 9))
  result = filter_lib.smc(model, x, num_particles=8,
                          resample_criterion_fn=criteria.never, seed=(4, 4))
  assert not result.resampled.numpy().any()
  np.testing.assert_allclose(bounds.iwae(model, x, num_particles=8,
                                         seed=(4, 4)), result.log_marginal)
  np.testing.assert_allclose(
      bounds.fivo(model, x, num_particles=8, resampling="never", seed=(4, 4)),
      result.log_marginal)
  # FIVO with its default rule does resample on this model.
  fivo = filter_lib.smc(model, x, num_particles=8,
                        resample_criterion_fn=criteria.ess_below_threshold(),
                        seed=(4, 4))
  assert fivo.resampled.numpy().any()


@pytest.mark.parametrize("bound,scheme", [
    ("elbo", None), ("iwae", None), ("fivo", "multinomial"),
    ("fivo", "systematic"), ("fivo", "stratified")])
def test_padding_leaves_every_bound_unchanged(bound, scheme):
  model = _model("filtering")
  x = model.sample(7, 2, seed=(8, 1))
  lengths = [7, 4]
  mask = shapes.sequence_mask(lengths, 7)
  padded = tf.concat([x, 100. * tf.ones([5, 2, x.shape[-1]], x.dtype)], 0)
  padded_mask = shapes.sequence_mask(lengths, 12)
  kwargs = dict(num_particles=3, seed=(6, 6))
  if bound == "fivo":
    kwargs.update(scheme=scheme, resampling="always")
  fn = getattr(bounds, bound)
  np.testing.assert_allclose(fn(model, padded, padded_mask, **kwargs),
                             fn(model, x, mask, **kwargs), rtol=1e-12)
  # All lengths equal to T is the same as no mask.
  full = shapes.sequence_mask([7, 7], 7)
  np.testing.assert_allclose(fn(model, x, full, **kwargs),
                             fn(model, x, None, **kwargs), rtol=1e-12)


def test_zero_length_sequence_has_zero_bound():
  model = _model("bootstrap")
  x = model.sample(5, 2, seed=(1, 1))
  mask = shapes.sequence_mask([5, 0], 5)
  for fn in (bounds.elbo, bounds.iwae, bounds.fivo):
    value = fn(model, x, mask, seed=(1, 1)).numpy()
    assert value[1] == 0. and np.isfinite(value[0])


def test_same_seed_same_bound_and_eager_equals_compiled():
  model = _model("bootstrap")
  x = model.sample(10, 3, seed=(1, 2))
  eager = bounds.fivo(model, x, num_particles=5, seed=(9, 9))
  np.testing.assert_array_equal(eager, bounds.fivo(model, x, num_particles=5,
                                                   seed=(9, 9)))
  assert not np.allclose(eager, bounds.fivo(model, x, num_particles=5,
                                            seed=(9, 10)))
  compiled = tf.function(
      lambda x, s: bounds.fivo(model, x, num_particles=5, seed=s))
  np.testing.assert_allclose(compiled(x, tf.constant([9, 9])), eager,
                             rtol=1e-10)
  # XLA's stateless random kernels use another algorithm than TensorFlow's,
  # so a compiled sweep draws other particles: it is reproducible, and
  # exact where no randomness matters (see the smoothing test below).
  xla = tf.function(
      lambda x, s: bounds.fivo(model, x, num_particles=5, seed=s),
      jit_compile=True)
  np.testing.assert_array_equal(xla(x, tf.constant([9, 9])),
                                xla(x, tf.constant([9, 9])))
  smoothing = _model("smoothing")
  exact = smoothing.log_likelihood(x).numpy()
  xla_iwae = tf.function(
      lambda x: bounds.iwae(smoothing, x, num_particles=3, seed=(1, 1)),
      jit_compile=True)
  np.testing.assert_allclose(xla_iwae(x), exact, rtol=1e-9)


def _tiny_vrnn():
  from seqlvm.models import VRNN  # pylint: disable=g-import-not-at-top
  return VRNN(5, hidden_size=8, latent_size=3,
              data_mean=np.full(5, 0.3))


def _binary(num_steps, batch_size, seed):
  rng = np.random.RandomState(seed)
  return tf.constant((rng.rand(num_steps, batch_size, 5) < 0.3).astype(
      np.float32))


@pytest.mark.parametrize("bound", ["elbo", "iwae", "fivo"])
def test_compiled_bounds_trace_once_and_equal_the_eager_ones(bound):
  """The public bounds run as one cached graph per model and options: a new
  seed, batch size or length reuses it, and its numbers are the eager
  sweep's, resampling included (the resampler draws the same ancestors for a
  batch size known only at run time)."""
  model, fn = _tiny_vrnn(), getattr(bounds, bound)
  x = _binary(9, 3, seed=0)
  options = dict(num_particles=4, resampling="always") if bound == "fivo" \
      else dict(num_particles=4)
  first = fn(model, x, seed=(1, 2), **options)
  traces = filter_lib.trace_count()
  calls = [(x, None, (1, 3)), (x[:6, :2], None, (1, 2)),
           (_binary(11, 5, seed=1), tf.sequence_mask([11, 4, 0, 7, 1], 11),
            (5, 5))]
  for xs, lengths_mask, seed in calls:
    mask = None if lengths_mask is None else tf.transpose(lengths_mask)
    compiled = fn(model, xs, mask, seed=seed, **options)
    assert compiled.shape == (xs.shape[1],)
    eager = fn(model, xs, mask, seed=seed, compiled=False, **options)
    np.testing.assert_array_equal(compiled, eager)
  assert filter_lib.trace_count() == traces  # no retracing
  np.testing.assert_array_equal(first, fn(model, x, seed=(1, 2), **options))
  assert not np.allclose(first, fn(model, x, seed=(1, 3), **options))


def test_compiled_bound_inside_a_users_function_and_tape():
  """Under a GradientTape the compiled bound's gradient is the eager one's;
  inside a caller's tf.function (a train step with Adam) it is built into
  the caller's graph (no compiled sweep of its own is traced)."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  params = random_lgssm_params(seed=4)
  a = tf.Variable(params.pop("transition_matrix"))
  model = LinearGaussianSSM(a, proposal="filtering", **params)
  x = model.sample(6, 3, seed=(1, 6))
  grads = {}
  for compiled in (True, False):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_sum(bounds.fivo(model, x, num_particles=3,
                                        resampling="always", seed=(4, 4),
                                        compiled=compiled))
    grads[compiled] = tape.gradient(loss, a).numpy()
  assert np.abs(grads[True]).max() > 1e-3
  np.testing.assert_allclose(grads[True], grads[False], rtol=1e-9)
  optimizer = tf_keras.optimizers.Adam(1e-2)

  @tf.function
  def train_step(x, seed):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(bounds.fivo(model, x, num_particles=3,
                                         resampling="always", seed=seed))
    optimizer.apply_gradients([(tape.gradient(loss, a), a)])
    return loss

  traces = filter_lib.trace_count()
  before = -tf.reduce_mean(bounds.fivo(model, x, num_particles=3,
                                       resampling="always", seed=(6, 6)))
  losses = [float(train_step(x, tf.constant([6, 6]))) for _ in range(12)]
  assert losses[0] == pytest.approx(float(before), rel=1e-9)
  assert losses[-1] < losses[0]
  assert filter_lib.trace_count() == traces


def test_compiled_bound_in_a_keras_train_step():
  """A Keras model whose `train_step` calls a bound trains with `fit`: the
  sweep is built into Keras's graph (no compiled sweep of its own) and the
  loss falls."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  params = random_lgssm_params(seed=4)
  a = tf.Variable(params.pop("transition_matrix"))
  lgssm = LinearGaussianSSM(a, proposal="filtering", **params)
  x = lgssm.sample(6, 8, seed=(1, 6))  # [T, B, D]

  class BoundModel(tf_keras.Model):

    def __init__(self, model):
      super().__init__()
      self.model = model

    def train_step(self, data):
      x = tf.transpose(data, [1, 0, 2])  # Keras batches are batch-major
      with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(bounds.fivo(self.model, x, num_particles=3,
                                           resampling="always",
                                           seed=tf.constant([6, 6])))
      variables = self.model.trainable_variables
      self.optimizer.apply_gradients(zip(tape.gradient(loss, variables),
                                         variables))
      return {"loss": loss}

  keras_model = BoundModel(lgssm)
  keras_model.compile(optimizer=tf_keras.optimizers.Adam(1e-2))
  traces = filter_lib.trace_count()
  before = a.numpy().copy()
  history = keras_model.fit(
      tf.data.Dataset.from_tensor_slices(tf.transpose(x, [1, 0, 2])).batch(8),
      epochs=12, verbose=0)
  losses = history.history["loss"]
  assert losses[-1] < losses[0]
  assert np.abs(a.numpy() - before).max() > 1e-2
  assert filter_lib.trace_count() == traces


def test_smoothing_bound_gradient_equals_exact_gradient():
  """With the exact posterior proposal, IWAE(theta) = log p(x; theta) for all
  theta, so their gradients in the transition matrix agree too."""
  params = random_lgssm_params(seed=3)
  a = tf.Variable(params.pop("transition_matrix"))
  model = LinearGaussianSSM(a, proposal="smoothing", **params)
  x = model.sample(6, 2, seed=(1, 5))
  # Two tapes: under a persistent one the compiled bound's first call builds
  # higher-order gradient functions too (10x slower to trace).
  with tf.GradientTape() as tape:
    exact = tf.reduce_sum(model.log_likelihood(x))
  g_exact = tape.gradient(exact, a).numpy()
  with tf.GradientTape() as tape:
    bound = tf.reduce_sum(bounds.iwae(model, x, num_particles=2, seed=(2, 2)))
  g_bound = tape.gradient(bound, a).numpy()
  assert np.abs(g_exact).max() > 1e-3
  np.testing.assert_allclose(g_bound, g_exact, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["elbo", "iwae", "fivo"])
def test_bound_spec_and_errors(name):
  model = _model("bootstrap")
  x = model.sample(4, 2, seed=(1, 2))
  spec = bounds.bound_spec(name, num_particles=2)
  result = spec.sweep(model, x, seed=(1, 1))
  assert result.log_weights.shape == (4, 2, 2)
  np.testing.assert_array_equal(spec(model, x, seed=(1, 1)),
                                result.log_marginal)
  # FIVO that never resamples is the IWAE, draw for draw.
  np.testing.assert_array_equal(
      bounds.bound_spec("fivo", 2, resampling="never")(model, x,
                                                       seed=(1, 1)),
      bounds.bound_spec("iwae", 2)(model, x, seed=(1, 1)))
  with pytest.raises(ValueError, match="Unknown bound"):
    bounds.bound_spec("vi")
  with pytest.raises(ValueError, match="Unknown resampling gradient"):
    bounds.fivo(model, x, resampling_gradient="reinforce")


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
@pytest.mark.parametrize("model_name", ["VRNN", "SRNN"])
def test_mixed_precision_bound_agrees_with_float32(model_name, precision):
  """Dense products in bfloat16/float16 (float32 weights and log weights):
  the same draws give the float32 bound to the products' rounding, and
  float32 gradients close to float32's. IWAE, whose draws do not depend on
  the weights' values."""
  from seqlvm import models  # pylint: disable=g-import-not-at-top
  from seqlvm.models import nets  # pylint: disable=g-import-not-at-top
  model_class = getattr(models, model_name)
  rng = np.random.RandomState(0)
  x = tf.constant((rng.rand(20, 3, 12) < 0.3).astype(np.float32))

  def bound_and_gradients(precision):
    with nets.matmul_precision(precision):
      model = model_class(12, hidden_size=16, latent_size=4,
                          data_mean=np.full(12, 0.3))
    with tf.GradientTape() as tape:
      bound = bounds.iwae(model, x, num_particles=3, seed=(1, 2),
                          compiled=False)
      loss = -tf.reduce_sum(bound)
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g.dtype == tf.float32 for g in grads)
    return bound.numpy(), np.concatenate([tf.reshape(g, [-1]) for g in grads])

  exact, g_exact = bound_and_gradients("float32")
  mixed, g_mixed = bound_and_gradients(precision)
  # Measured here: relative bound differences up to 2.5e-4 (bfloat16) and
  # 2.5e-5 (float16), relative gradient differences up to 1.8e-2 and 7e-4.
  # A CI machine measured 2.0e-3 for SRNN in bfloat16 (its CPU's reduced-
  # precision kernels round differently), so the bounds are held to twice
  # the format's unit roundoff u (2^-8 for bfloat16, 2^-11 for float16) and
  # the gradients to 40u; a wrong product is off by far more. (IWAE: FIVO's
  # resampling decisions and ancestors may flip with the rounding, which
  # changes the estimate by more than rounding.)
  unit_roundoff = 2.**-8 if precision == "bfloat16" else 2.**-11
  assert not np.array_equal(mixed, exact)
  np.testing.assert_allclose(mixed, exact, rtol=2 * unit_roundoff)
  relative = np.linalg.norm(g_mixed - g_exact) / np.linalg.norm(g_exact)
  assert relative < 40 * unit_roundoff, relative
