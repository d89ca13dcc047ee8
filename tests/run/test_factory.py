"""Config -> model and bound specification."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from seqlvm import bounds
from seqlvm import registry
from seqlvm import shapes
from seqlvm.config import Config
from seqlvm.data import sources
from seqlvm.errors import ConfigError
from seqlvm.models import nets
from seqlvm.run import distribute
from seqlvm.run import factory
from seqlvm.run import training
from seqlvm.smc import criteria
from seqlvm.smc import gradients


@pytest.mark.parametrize("model", registry.MODELS.names)
def test_every_registered_model_is_built_from_a_config(model):
  config = Config(model=model, hidden_size=6, latent_size=3,
                  wavenet_channels=4, wavenet_layers=2)
  built = factory.build_model(config, data_size=5, data_mean=np.full(5, .2))
  assert isinstance(built, registry.MODELS.load(model))
  assert built.data_size == 5 and built.emission_type == "bernoulli"
  if registry.MODELS.meta(model, "has_latents"):
    assert built.hidden_size == 6
  if registry.MODELS.meta(model, "wavenet"):
    assert built.receptive_field == 2 ** 2 + 1


@pytest.mark.parametrize("model", registry.MODELS.names)
def test_precision_reaches_every_network_and_keeps_float32_weights(model):
  config = Config(model=model, hidden_size=6, latent_size=3,
                  wavenet_channels=4, wavenet_layers=2, precision="bfloat16")
  built = factory.build_model(config, data_size=5, data_mean=np.full(5, .2))
  reference = factory.build_model(config.replace(precision="float32"),
                                  data_size=5, data_mean=np.full(5, .2))
  layers = [m for m in built.submodules if isinstance(m, nets.Linear)]
  assert layers and all(m.matmul_dtype == tf.bfloat16 for m in layers)
  assert [(v.name, v.shape, v.dtype) for v in built.trainable_variables] == [
      (v.name, v.shape, v.dtype) for v in reference.trainable_variables]
  assert {v.dtype for v in built.trainable_variables} == {tf.float32}


def test_mixed_precision_trains_under_xla():
  """bfloat16 products in training's XLA-compiled bound and gradient, with
  its batched weight gradients: finite, float32, and close to float32's."""
  x = tf.constant((np.random.RandomState(0).rand(8, 2, 5) < .3), tf.float32)

  def loss_and_gradients(precision):
    config = Config(hidden_size=6, latent_size=3, precision=precision)
    model = factory.build_model(config, data_size=5, data_mean=np.full(5, .2))
    spec = bounds.bound_spec("iwae", 2)

    @tf.function(jit_compile=True)
    def fn(x):
      with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(spec.sweep(
            model, x, seed=tf.constant([1, 2]),
            batch_weight_gradients=True).log_marginal)
      return loss, tape.gradient(loss, model.trainable_variables)

    return fn(x)

  loss, grads = loss_and_gradients("bfloat16")
  exact_loss, exact_grads = loss_and_gradients("float32")
  assert all(g.dtype == tf.float32 and np.all(np.isfinite(g)) for g in grads)
  assert loss.numpy() != exact_loss.numpy()  # the products were rounded
  np.testing.assert_allclose(loss, exact_loss, rtol=2e-3)
  flat = np.concatenate([np.ravel(g) for g in grads])
  exact = np.concatenate([np.ravel(g) for g in exact_grads])
  assert np.linalg.norm(flat - exact) < 0.15 * np.linalg.norm(exact)


def test_concrete_latent_reaches_the_model():
  config = Config(latent="concrete", categories=7, latent_temperature=0.3)
  built = factory.build_model(config, data_size=5, data_mean=None)
  assert built.latent == "concrete" and built.latent_size == 7
  assert built.temperature == 0.3


def test_bound_spec_trains_with_the_configured_gradient_and_evaluates_with_stop():
  config = Config(resampling="ess", threshold=0.3,
                  resampling_gradient="soft", soft_mixing=0.2)
  train = factory.bound_spec(config, "fivo", 3)
  evaluate = factory.bound_spec(config, "fivo", 3, training=False)
  assert isinstance(train.resample_criterion_fn, criteria.EssBelowThreshold)
  assert train.resample_criterion_fn.threshold == 0.3
  assert isinstance(train.resampling_gradient, gradients.Soft)
  assert train.resampling_gradient.mixing == 0.2
  assert isinstance(evaluate.resampling_gradient, gradients.Stop)
  elbo = factory.bound_spec(config, "elbo", 3)
  assert elbo.final_reduction == "mean" and not (
      elbo.resample_criterion_fn.can_fire)


def test_resolve_emission():
  rolls = sources.InMemorySource({"train": [np.ones([3, 2], np.float32)]})
  speechlike = sources.InMemorySource(
      {"train": [np.ones([3, 2], np.float32)]}, kind="real")
  assert factory.resolve_emission(Config(), rolls) == "bernoulli"
  assert factory.resolve_emission(Config(), speechlike) == "gaussian"
  assert factory.resolve_emission(Config(emission="gaussian"),
                                  rolls) == "gaussian"
  with pytest.raises(ConfigError, match="needs binary data"):
    factory.resolve_emission(Config(emission="bernoulli"), speechlike)


def test_learning_rate_schedules_at_chosen_steps():
  rate = lambda config, k: float(
      factory.learning_rate_schedule(config)(k))
  constant = Config(learning_rate=3e-4)
  assert factory.learning_rate_schedule(constant) == 3e-4  # a float
  # Warm-up: update k (from 0) at (k + 1) / warmup of the peak.
  warm = Config(learning_rate=1e-3, warmup_steps=4)
  assert [rate(warm, k) for k in (0, 1, 3, 4, 100)] == pytest.approx(
      [2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3])
  # Exponential: times the rate every decay_steps, smoothly.
  exp = Config(learning_rate=1e-3, lr_schedule="exponential",
               lr_decay_steps=100, lr_decay_rate=0.5)
  assert [rate(exp, k) for k in (0, 50, 100, 200)] == pytest.approx(
      [1e-3, 1e-3 * 0.5 ** 0.5, 5e-4, 2.5e-4])
  # Cosine after a warm-up, down to lr_min_fraction of the peak; the
  # decay length defaults to the steps after the warm-up, resolved once.
  cos = factory.resolve_schedule(Config(
      learning_rate=1e-3, lr_schedule="cosine", warmup_steps=10,
      num_steps=110, lr_min_fraction=0.1))
  assert cos.lr_decay_steps == 100
  schedule = factory.learning_rate_schedule(cos)
  again = factory.LinearWarmup.from_config(schedule.get_config())
  assert float(again(60)) == pytest.approx(float(schedule(60)))
  assert [rate(cos, k) for k in (9, 10, 60, 110, 500)] == pytest.approx(
      [1e-3, 1e-3, 1e-3 * (0.1 + 0.9 * 0.5), 1e-4, 1e-4])
  # A resumed run keeps the stored decay length, also with more steps.
  longer = factory.resolve_schedule(cos.replace(lr_decay_steps=0,
                                                    num_steps=500), cos)
  assert longer.lr_decay_steps == 100
  # The optimizer reports the rate of its next update.
  variable = tf.Variable(1.)
  optimizer, current = factory.make_optimizer(warm, [variable])
  assert current() == pytest.approx(2.5e-4)
  optimizer.apply_gradients([(tf.constant(1.), variable)])
  assert current() == pytest.approx(5e-4)


def test_weight_decay_shrinks_each_variable_by_rate_times_decay():
  """AdamW's decoupled decay: with a zero gradient (Adam's step is 0) a
  variable is multiplied by 1 - rate x weight_decay per update; 0 keeps
  plain Adam, whose zero-gradient update leaves it alone."""
  for decay, kind in ((0., tf_keras.optimizers.Adam),
                      (0.5, tf_keras.optimizers.AdamW)):
    config = Config(learning_rate=0.1, weight_decay=decay)
    variable = tf.Variable([2., -4.])
    optimizer, _ = factory.make_optimizer(config, [variable])
    assert type(optimizer) is kind  # pylint: disable=unidiomatic-typecheck
    for _ in range(2):
      optimizer.apply_gradients([(tf.zeros([2]), variable)])
    assert variable.numpy() == pytest.approx(
        np.array([2., -4.]) * (1. - 0.1 * decay) ** 2)
  with pytest.raises(ConfigError, match="weight_decay"):
    Config(weight_decay=-1.)


def test_kl_weight_schedule_rises_linearly_to_one():
  assert factory.kl_weight_schedule(Config()) is None
  # A model without latents has no latent term to weight.
  assert factory.kl_weight_schedule(Config(model="wavenet",
                                           kl_warmup_steps=10)) is None
  schedule = factory.kl_weight_schedule(Config(kl_warmup_steps=10,
                                               kl_weight_start=0.2))
  assert [float(schedule(k)) for k in (0, 5, 10, 11, 1000)] == pytest.approx(
      [0.2, 0.6, 1., 1., 1.])
  schedule = factory.kl_weight_schedule(Config(kl_warmup_steps=4))
  assert float(schedule(tf.constant(1, tf.int64))) == pytest.approx(0.25)


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_the_training_step_anneals_the_kl_weight_by_update_count(mode):
  """The step's objective at update k is the sweep with beta(k) (here
  0.25 at k = 1, the bound itself from k = 4 on), for the same seed."""
  config = Config(data="chorales", bound="iwae", hidden_size=8,
                  latent_size=4, kl_warmup_steps=4, learning_rate=1e-9)
  model = factory.build_model(config, data_size=5, data_mean=np.full(5, .3))
  optimizer, _ = factory.make_optimizer(config, model.trainable_variables)
  step = training.make_train_step(model, optimizer, config, 5, mode=mode)
  x = tf.cast(tf.random.stateless_uniform([6, 4, 5], (1, 2)) < 0.3,
              tf.float32)
  lengths, seed = tf.constant([6, 4, 5, 1]), tf.constant([3, 4])
  spec = factory.bound_spec(config, "iwae", 4)
  mask = shapes.sequence_mask(lengths, 6)
  # (XLA draws other random numbers than the graph for the same seed: the
  # reference sweep is compiled as the step is.)
  sweep = tf.function(lambda beta: spec.sweep(
      model, x, mask, seed, kl_weight=beta).log_marginal,
                      jit_compile=(mode == "xla"))
  per_step = lambda beta: float(tf.reduce_sum(sweep(beta)) / 16.)
  for update, beta in ((1, 0.25), (4, None), (9, None)):
    optimizer.iterations.assign(update)
    bound = float(step(x, lengths, seed)[0])
    assert bound == pytest.approx(per_step(beta), rel=1e-5)
  assert per_step(0.25) != pytest.approx(per_step(None), rel=1e-3)


_PROPOSED = [m for m in registry.MODELS.names
             if registry.MODELS.meta(m, "has_latents")]


def _perturbed(variables, scale=0.5):
  """Adds noise to each variable; returns a function that restores them."""
  saved = [v.numpy() for v in variables]
  for i, v in enumerate(variables):
    v.assign_add(scale * tf.random.stateless_normal(v.shape, (i, 7),
                                                   dtype=v.dtype))
  return lambda: [v.assign(s) for v, s in zip(variables, saved)]


@pytest.mark.parametrize("model", _PROPOSED)
def test_proposal_variables_are_those_only_the_proposal_reads(model):
  """Changing the proposal's variables leaves the generative model (its
  samples for a seed) as it was and changes the bound; changing any other
  variable changes the samples."""
  config = Config(model=model, hidden_size=6, latent_size=3,
                  wavenet_channels=4, wavenet_layers=2)
  # A Gaussian emission: samples that move with every variable they read.
  built = factory.build_model(config, data_size=5, data_mean=np.full(5, .2),
                              emission="gaussian")
  owned = {v.ref() for v in built.proposal_variables}
  assert owned and owned < {v.ref() for v in built.trainable_variables}
  x = tf.random.stateless_normal([4, 2, 5], (1, 2))
  sample = lambda: built.sample(4, 2, seed=(5, 6)).numpy()
  bound = lambda: bounds.iwae(built, x, num_particles=2, seed=(3, 4),
                              compiled=False).numpy()
  before_sample, before_bound = sample(), bound()
  restore = _perturbed(built.proposal_variables)
  np.testing.assert_array_equal(sample(), before_sample)
  assert not np.allclose(bound(), before_bound)
  restore()
  for v in built.trainable_variables:
    if v.ref() in owned:
      continue
    restore = _perturbed([v], scale=2.)
    assert not np.array_equal(sample(), before_sample), v.name
    restore()


def test_a_proposal_bound_needs_a_proposal_of_the_model_s_own():
  with pytest.raises(ConfigError, match="wavenet model has no latents"):
    Config(model="wavenet", proposal_bound="iwae")
  with pytest.raises(ConfigError, match="proposal_bound must be"):
    Config(proposal_bound="kalman")
  # A model from elsewhere (make_dataset_and_model) without a proposal.
  config = Config(model="wavenet", wavenet_channels=4, wavenet_layers=2)
  built = factory.build_model(config, data_size=5, data_mean=np.full(5, .2))
  assert built.proposal_variables == ()
  with pytest.raises(ConfigError, match="no proposal variables"):
    factory.training_objective(built, Config(proposal_bound="iwae"))


@pytest.mark.parametrize("model,batched", [("vrnn", False), ("srnn", False),
                                           ("vrnn", True)])
def test_the_proposal_bound_trains_the_proposal_and_the_bound_the_rest(
    model, batched):
  """FIVO for the model with the IWAE for the proposal: the model's
  variables get exactly FIVO's gradient (and the loss is FIVO's), the
  proposal's exactly the IWAE's from the folded seed, which differs from
  what FIVO gives them; proposal_bound equal to the bound is one sweep.
  With the weight gradients batched after the loop (`batched`) too, and
  through tf.distribute's per-replica step."""
  config = Config(model=model, bound="fivo", proposal_bound="iwae",
                  hidden_size=6, latent_size=3, num_particles=3)
  built = factory.build_model(config, data_size=5, data_mean=np.full(5, .3))
  x = tf.cast(tf.random.stateless_uniform([7, 3, 5], (1, 2)) < 0.3,
              tf.float32)
  lengths, seed = tf.constant([7, 5, 2]), tf.constant([3, 9])
  mask = shapes.sequence_mask(lengths, 7)
  variables, objective = factory.training_objective(built, config, batched)
  loss, grads, _ = objective(x, mask, seed, 14., kl_weight=0.5)
  if batched:  # The distributed step's share: the same, None as zeros.
    local = distribute.local_step(built, config, True)
    local_loss, local_grads, _ = local(x, lengths, seed, tf.constant(14.),
                                       tf.constant(0.5))
    assert float(local_loss) == float(loss)
    for g, gl in zip(grads, local_grads):
      np.testing.assert_array_equal(gl.numpy(), g.numpy())

  def alone(name, sweep_seed):
    spec = factory.bound_spec(config, name, 3)
    with tf.GradientTape() as tape:
      value = -tf.reduce_sum(spec.sweep(
          built, x, mask, sweep_seed, batch_weight_gradients=batched,
          kl_weight=0.5).log_marginal) / 14.
    return value, tape.gradient(value, variables)

  fivo_loss, fivo_grads = alone("fivo", seed)
  _, iwae_grads = alone(
      "iwae", tf.random.experimental.stateless_fold_in(seed, 1 << 20))
  assert float(loss) == float(fivo_loss)
  owned = {v.ref() for v in built.proposal_variables}
  for v, g, gf, gi in zip(variables, grads, fivo_grads, iwae_grads):
    expected = gi if v.ref() in owned else gf
    np.testing.assert_allclose(g.numpy(), expected.numpy(), rtol=1e-6,
                               atol=1e-7, err_msg=v.name)
  assert not all(np.allclose(gf.numpy(), gi.numpy())
                 for v, gf, gi in zip(variables, fivo_grads, iwae_grads)
                 if v.ref() in owned)
  _, same = factory.training_objective(built, config.replace(
      proposal_bound="fivo"), batched)
  same_loss, same_grads, _ = same(x, mask, seed, 14., kl_weight=0.5)
  assert float(same_loss) == float(fivo_loss)
  for g, gf in zip(same_grads, fivo_grads):
    np.testing.assert_array_equal(g.numpy(), gf.numpy())


def test_the_training_step_with_a_proposal_bound_compiles_and_learns():
  """A smoke test (the routing is tested above): under XLA, a few updates
  of FIVO with an IWAE proposal raise the training bound on a fixed
  batch."""
  config = Config(bound="fivo", proposal_bound="iwae", hidden_size=8,
                  latent_size=4, learning_rate=3e-2)
  model = factory.build_model(config, data_size=5, data_mean=np.full(5, .3))
  optimizer, _ = factory.make_optimizer(config, model.trainable_variables)
  step = training.make_train_step(model, optimizer, config, 5, mode="xla")
  x = tf.cast(tf.random.stateless_uniform([6, 4, 5], (1, 2)) < 0.3,
              tf.float32)
  lengths = tf.constant([6, 4, 5, 1])
  bounds_seen = []
  for k in range(30):
    value, norm, applied, _ = step(x, lengths, tf.constant([k, 1]))
    assert bool(applied) and np.isfinite(float(norm))
    bounds_seen.append(float(value))
  assert np.mean(bounds_seen[-5:]) > np.mean(bounds_seen[:5]) + 0.1
