"""Deterministic SMC tables: toy models whose increments are known by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

from seqlvm import registry
from seqlvm import shapes
from seqlvm.models import base
from seqlvm.smc import criteria
from seqlvm.smc import filter as filter_lib
from seqlvm.smc import resampling


class TableModel(base.SequenceModel):
  """Each particle carries a label v (initially its particle index n); at
  step t it adds the increment table[t, v]. Resampling copies labels, so the
  trace of labels shows which ancestors were drawn."""

  def __init__(self, table, num_particles):
    super().__init__()
    self.table = tf.constant(table, tf.float64)  # [T, N]
    self.num_particles = num_particles

  def prepare(self, x, mask):
    return (tf.broadcast_to(tf.range(tf.shape(x)[0])[:, None],
                            tf.shape(x)[:2]),)

  def initial_state(self, batch_size):
    rows = tf.range(batch_size)
    return rows // (batch_size // self.num_particles)  # particle index n

  def step(self, state, context_t, x_t, seed):
    t = context_t[0]
    increment = tf.gather_nd(self.table, tf.stack([t, state], axis=-1))
    zeros = tf.zeros_like(increment)
    return base.StepOutput(state, zeros, increment, zeros)


def run(table, lengths, criterion, reduction="logmeanexp", scheme="systematic"):
  table = np.asarray(table, np.float64)
  num_steps, n = table.shape
  x = tf.zeros([num_steps, len(lengths), 1], tf.float64)
  mask = shapes.sequence_mask(lengths, num_steps)
  return filter_lib.smc(TableModel(table, n), x, mask, num_particles=n,
                        resample_criterion_fn=criterion,
                        resample_fn=registry.SCHEMES.load(scheme),
                        final_reduction=reduction, seed=(1, 2))


CONSTANT = [[0.5] * 3, [-1.25] * 3, [2.] * 3, [0.25] * 3]


@pytest.mark.parametrize("criterion", [criteria.never, criteria.always,
                                       criteria.ess_below_threshold(0.5)])
def test_constant_increments_sum_over_valid_steps(criterion):
  result = run(CONSTANT, lengths=[4, 2, 0], criterion=criterion)
  np.testing.assert_allclose(result.log_marginal, [1.5, -0.75, 0.], atol=1e-12)
  resampled = result.resampled.numpy()
  assert resampled.shape == (4, 3)
  if criterion is criteria.always:  # every real step, none past the end
    np.testing.assert_array_equal(resampled, shapes.sequence_mask(
        [4, 2, 0], 4).numpy())
  else:  # equal weights: ESS = N never falls below N / 2
    assert not resampled.any()


def test_degenerate_step_triggers_ess_and_gathers_ancestors():
  ninf = -np.inf
  table = [[0., 0., 0.],            # equal: no resampling
           [math.log(3.), ninf, ninf],  # only particle 0 survives
           [0.5, 7., 7.],           # all are copies of particle 0 now
           [0., 0., 0.]]
  result = run(table, lengths=[4, 4], criterion=criteria.ess_below_threshold())
  np.testing.assert_array_equal(result.resampled.numpy()[:, 0],
                                [False, True, False, False])
  # Step 1: logmeanexp([log 3, -inf, -inf]) = 0; then every particle adds 0.5.
  np.testing.assert_allclose(result.log_marginal, [0.5, 0.5], atol=1e-12)
  np.testing.assert_array_equal(result.final_state, np.zeros(6))


def test_without_resampling_the_particles_keep_their_paths():
  table = [[0., math.log(2.), math.log(3.)], [1., 1., 1.]]
  result = run(table, lengths=[2], criterion=criteria.never)
  expected = math.log((1. + 2. + 3.) / 3.) + 1.
  np.testing.assert_allclose(result.log_marginal, [expected], atol=1e-12)
  np.testing.assert_array_equal(result.final_state, [0, 1, 2])
  elbo = run(table, lengths=[2], criterion=criteria.never, reduction="mean")
  np.testing.assert_allclose(elbo.log_marginal,
                             [(0. + math.log(2.) + math.log(3.)) / 3. + 1.],
                             atol=1e-12)


def test_weights_frozen_past_the_end():
  table = [[0., 1., 2.], [3., 4., 5.], [6., 7., 8.]]
  result = run(table, lengths=[3, 1], criterion=criteria.never)
  log_weights = result.log_weights.numpy()  # [T, N, B]
  np.testing.assert_allclose(log_weights[:, :, 1],
                             np.tile([[0., 1., 2.]], [3, 1]))
  np.testing.assert_allclose(log_weights[-1, :, 0], [9., 12., 15.])


def test_resampling_at_the_last_step_leaves_the_estimate():
  table = [[0., 1., 2.], [0.3, -0.2, 0.1]]
  never = run(table, lengths=[2], criterion=criteria.never)
  always = run([[0., 1., 2.], [0., 0., 0.]], lengths=[2],
               criterion=criteria.always)
  # With always: step 0 adds logmeanexp([0, 1, 2]); then equal increments 0.
  np.testing.assert_allclose(always.log_marginal,
                             [np.log(np.mean(np.exp([0., 1., 2.])))],
                             atol=1e-12)
  assert np.isfinite(never.log_marginal.numpy()).all()


def test_bad_arguments():
  x = tf.zeros([2, 1, 1], tf.float64)
  model = TableModel(np.zeros([2, 2]), 2)
  with pytest.raises(ValueError, match="num_particles"):
    filter_lib.smc(model, x, num_particles=0)
  with pytest.raises(ValueError, match="final_reduction"):
    filter_lib.smc(model, x, num_particles=2, final_reduction="max")
  with pytest.raises(ValueError, match="time-major"):
    filter_lib.smc(model, tf.zeros([2, 1]), num_particles=2)


def test_python_loop_equals_while_loop():
  # The benchmarks' baseline runs the same step function from Python.
  table = np.log(np.random.RandomState(0).rand(5, 4) + 0.1)
  x = tf.zeros([5, 2, 1], tf.float64)
  mask = shapes.sequence_mask([5, 3], 5)
  kwargs = dict(num_particles=4, resample_criterion_fn=criteria.always,
                seed=(3, 3))
  a = filter_lib.smc(TableModel(table, 4), x, mask, **kwargs)
  b = filter_lib.smc(TableModel(table, 4), x, mask, loop="python", **kwargs)
  for u, v in zip(a[:4], b[:4]):
    np.testing.assert_allclose(v, u, rtol=1e-12)
  with pytest.raises(ValueError, match="loop"):
    filter_lib.smc(TableModel(table, 4), x, loop="unrolled", num_particles=4)


@pytest.mark.parametrize("model_name, mode, min_weights", [
    (name, "graph", 0) for name in registry.MODELS.names] + [
        ("vrnn", "xla", 0), ("vrnn", "graph", 200),
        ("vrnn", "eager", 0)])
def test_batched_weight_gradients_equal_the_per_step_ones(
    model_name, mode, min_weights, monkeypatch):
  """batch_weight_gradients (training's default) takes the step's weight
  gradients after the loop, one product over time: the same bound, and the
  same gradients to float32 rounding, for every model, with padding and
  resampling at every step; in a graph, under XLA and called eagerly (the
  cached compiled sweep, whose batch size is known only at run time).
  Every product batched (min_weights 0), and some (200: the VRNN's LSTM
  and first layers, not its 3-wide ones)."""
  monkeypatch.setattr(filter_lib, "MIN_BATCHED_WEIGHTS", min_weights)
  batched_products, all_products = [], []
  zeros = filter_lib._zeros_with_weight_gradient  # pylint: disable=protected-access
  record = filter_lib._WeightGradientBatcher._record  # pylint: disable=protected-access

  def counted(w, *args):
    batched_products.append(tuple(w.shape))
    return zeros(w, *args)

  def recorded(self, layer, start, stop, x, matmul):
    all_products.append((stop - start) * layer.output_size)
    return record(self, layer, start, stop, x, matmul)

  monkeypatch.setattr(filter_lib, "_zeros_with_weight_gradient", counted)
  monkeypatch.setattr(filter_lib._WeightGradientBatcher, "_record", recorded)  # pylint: disable=protected-access
  from seqlvm.config import Config  # pylint: disable=g-import-not-at-top
  from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
  config = Config(model=model_name, hidden_size=8, latent_size=3,
                  wavenet_channels=4, wavenet_layers=2)
  model = factory.build_model(config, data_size=5, data_mean=np.full(5, .3))
  x = tf.constant((np.random.RandomState(1).rand(9, 2, 5) < .3), tf.float32)
  mask = shapes.sequence_mask([9, 6], 9)

  def bound_and_gradients(x, mask, batched):
    with tf.GradientTape() as tape:
      bound = filter_lib.smc(
          model, x, mask, num_particles=3, seed=tf.constant([4, 2]),
          resample_criterion_fn=criteria.always,
          batch_weight_gradients=batched).log_marginal
      total = tf.reduce_sum(bound)
    return bound, tape.gradient(total, model.trainable_variables)

  if mode != "eager":
    bound_and_gradients = tf.function(bound_and_gradients,
                                      jit_compile=(mode == "xla"))
  bound, grads = bound_and_gradients(x, mask, False)
  assert not batched_products
  batched_bound, batched_grads = bound_and_gradients(x, mask, True)
  # (A WaveNet without latents computes everything ahead, in `prepare`: its
  # step has no products.)
  assert bool(batched_products) == registry.MODELS.meta(model_name,
                                                        "has_latents")
  if min_weights:
    assert min(a * b for a, b in batched_products) >= min_weights
    assert 0 < len(batched_products) < len(all_products)
  else:
    assert len(batched_products) == len(all_products)
  np.testing.assert_array_equal(batched_bound, bound)
  # (None: a variable the bound does not use, such as a WaveNet's last
  # skip layer's, in both.)
  assert [g is None for g in batched_grads] == [g is None for g in grads]
  grads = [tf.convert_to_tensor(g).numpy() for g in grads if g is not None]
  batched_grads = [g for g in batched_grads if g is not None]
  for g, batched in zip(grads, batched_grads):
    np.testing.assert_allclose(batched, g, rtol=1e-5,
                               atol=1e-6 * np.abs(g).max())
  assert min(np.abs(g).max() for g in grads) > 0


def test_batched_weight_gradients_need_the_while_loop():
  table = np.zeros([3, 2])
  with pytest.raises(ValueError, match="batch_weight_gradients"):
    filter_lib.smc(TableModel(table, 2), tf.zeros([3, 1, 1], tf.float64),
                   num_particles=2, loop="python", batch_weight_gradients=True)


class LatentTableModel(TableModel):
  """A TableModel whose increment is split: log p(x_t | .) = table[t, v]
  and log p(z_t | .) - log q(z_t | .) = latent[t, v] (as log p(z) =
  2 latent and log q(z) = latent), so that the KL weight's effect on each
  particle is known by hand."""

  def __init__(self, table, latent, num_particles):
    super().__init__(table, num_particles)
    self.latent = tf.constant(latent, tf.float64)  # [T, N]

  def step(self, state, context_t, x_t, seed):
    t = context_t[0]
    where = tf.stack([t, state], axis=-1)
    latent = tf.gather_nd(self.latent, where)
    return base.StepOutput(state, 2. * latent,
                           tf.gather_nd(self.table, where), latent)


def _latent_run(kl_weight, criterion=criteria.never, reduction="logmeanexp",
                compiled=True, lengths=(3, 2), model=None):
  rng = np.random.RandomState(4)
  table, latent = rng.randn(3, 4), rng.randn(3, 4)
  x = tf.zeros([3, len(lengths), 1], tf.float64)
  mask = shapes.sequence_mask(list(lengths), 3)
  result = filter_lib.smc(model or LatentTableModel(table, latent, 4), x,
                          mask, num_particles=4,
                          resample_criterion_fn=criterion,
                          final_reduction=reduction, seed=(5, 6),
                          kl_weight=kl_weight, compiled=compiled)
  return result, table, latent


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("kl_weight", [0., 0.3, 1.])
def test_kl_weight_scales_the_latent_term_of_each_increment(kl_weight,
                                                            compiled):
  """log alpha_t = log p(x_t | .) + beta (log p(z_t | .) - log q(z_t | .)),
  by hand for the IWAE's and the ELBO's reductions, over the real steps."""
  for reduction in ("logmeanexp", "mean"):
    result, table, latent = _latent_run(kl_weight, reduction=reduction,
                                        compiled=compiled)
    expected = []
    for length in (3, 2):
      paths = (table[:length] + kl_weight * latent[:length]).sum(axis=0)
      expected.append(np.log(np.mean(np.exp(paths)))
                      if reduction == "logmeanexp" else paths.mean())
    np.testing.assert_allclose(result.log_marginal, expected, rtol=1e-12)


def test_kl_weight_one_is_the_bound_and_the_criterion_sees_the_annealed_weights():
  ess = criteria.ess_below_threshold(0.5)
  plain = _latent_run(None, criterion=ess)[0]
  one = _latent_run(1., criterion=ess)[0]
  np.testing.assert_allclose(one.log_marginal, plain.log_marginal,
                             rtol=1e-12)
  np.testing.assert_array_equal(one.resampled, plain.resampled)
  # At beta = 0 the weights are log p(x | .) alone: resampling follows them.
  zero, table, _ = _latent_run(0., criterion=criteria.always, lengths=(3,))
  np.testing.assert_allclose(zero.log_weights[0, :, 0], table[0], rtol=1e-12)


def test_kl_weight_is_an_input_of_the_compiled_sweep():
  """A new beta reuses the compiled sweep (training changes it each step);
  a non-scalar beta is refused."""
  model = LatentTableModel(np.zeros([3, 4]), np.ones([3, 4]), 4)
  _latent_run(0.2, model=model)
  traces = filter_lib.trace_count()
  first = _latent_run(0.7, model=model)[0].log_marginal
  assert filter_lib.trace_count() == traces
  np.testing.assert_allclose(first, [2.1, 1.4], rtol=1e-12)
  # A float32 beta (the training schedule's) serves float64 data too.
  np.testing.assert_allclose(
      _latent_run(tf.constant(0.5, tf.float32), model=model)[0].log_marginal,
      [1.5, 1.], rtol=1e-12)
  with pytest.raises(ValueError, match="kl_weight must be a scalar"):
    _latent_run([0.5, 0.5], model=model)
