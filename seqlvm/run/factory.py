"""From a config to the objects a run uses: the data source, the model and
the bound specification.

Names become callables here, once: `bound_spec` turns the config's bound,
resampling rule, scheme and gradient estimator into a `bounds.BoundSpec`,
and `build_model` the model name into its class (`seqlvm.registry.MODELS`),
constructed with the config's settings that its constructor accepts. A new
model needs a registry entry and its class, nothing here.

`train`, `evaluate` and `sample` take an injectable
`make_dataset_and_model(config)` (as FIVO's `create_dataset_and_model_fn`) so
tests and other datasets can plug in; `make_dataset_and_model` below is the
default. It returns a `seqlvm.data.sources.Source` (or an object with
.train / .valid / .test lists) and the model.

Recommended import: `from seqlvm.run import factory`.
"""

import inspect

import tensorflow as tf
import tf_keras

from seqlvm import bounds
from seqlvm import registry
from seqlvm.data import sources
from seqlvm.data import registry as data_registry
from seqlvm.errors import ConfigError
from seqlvm.models import nets

__all__ = ["make_dataset_and_model", "resolve_emission", "build_model",
           "model_arguments", "bound_spec", "training_objective",
           "resolve_schedule",
           "learning_rate_schedule", "LinearWarmup", "kl_weight_schedule",
           "make_optimizer"]


def make_dataset_and_model(config):
  """The default: a dataset by name or path (pianorolls or prepared speech)
  and the model the config names for it."""
  source = sources.open_source(data_registry.resolve(config.data))
  model = build_model(config, data_size=source.data_size,
                      data_mean=source.train_mean,
                      emission=resolve_emission(config, source))
  return source, model


def resolve_emission(config, source):
  """The config's emission, or the data's natural one for "auto".

  Raises:
    ConfigError: for a Bernoulli emission on data that is not binary.
  """
  source = sources.as_source(source)
  if config.emission == "auto":
    return source.default_emission
  if config.emission == "bernoulli" and not source.binary:
    raise ConfigError(
        f"{config.data}: a Bernoulli emission needs binary data (pianorolls)"
        f"; this is {source.kind or 'real-valued'} data. Use "
        "--emission gaussian (or auto).")
  return config.emission


def model_arguments(config):
  """Every constructor argument a config can give, by the name models use.

  Dilations 1, 2, 4, ...: a receptive field of 2**wavenet_layers + 1 steps.
  """
  return dict(
      hidden_size=config.hidden_size, latent_size=config.latent_size,
      latent=config.latent, categories=config.categories,
      temperature=config.latent_temperature,
      channels=config.wavenet_channels,
      dilations=tuple(2 ** i for i in range(config.wavenet_layers)),
      seed=config.seed)


def build_model(config, data_size, data_mean, emission=None):
  """The model `config.model` names, for data of size `data_size`.

  The model's class gets the arguments of `model_arguments` that its
  constructor takes (a model without latents takes no `hidden_size`; only
  the models that offer a concrete latent take `latent`). Its networks
  compute their products in `config.precision`.
  """
  emission = emission or config.emission
  if emission == "auto":
    emission = "bernoulli"
  model_class = registry.MODELS.load(config.model)
  accepted = inspect.signature(model_class).parameters
  kwargs = {k: v for k, v in model_arguments(config).items()
            if k in accepted}
  with nets.matmul_precision(config.precision):
    return model_class(data_size, emission=emission, data_mean=data_mean,
                       **kwargs)


def bound_spec(config, name, num_particles, training=True):
  """The `bounds.BoundSpec` of bound `name` under the config's options.

  Training uses the configured resampling gradient; evaluation always uses
  "stop", whose value is the particle filter's log p_hat ("concrete" mixes
  particles and "soft" reweights them, which changes the estimate itself).
  """
  options = dict(resampling=config.resampling, threshold=config.threshold,
                 scheme=config.scheme)
  if training:
    options.update(resampling_gradient=config.resampling_gradient,
                   soft_mixing=config.soft_mixing,
                   resampling_temperature=config.resampling_temperature)
  return bounds.bound_spec(name, num_particles, **options)


def training_objective(model, config, batch_weight_gradients=False):
  """The training objective and which variables each bound trains.

  Without `config.proposal_bound` (or with the training bound itself) one
  sweep of `config.bound` gives every variable its gradient. With another
  proposal bound, the model's `proposal_variables` take the gradient of a
  second sweep, of that bound at the same N (its seed folded in from the
  step's), and all other variables the training bound's.

  Returns:
    variables: the model's trainable variables, in the gradients' order.
    objective: (x `[T, B, D]`, mask `[T, B]`, seed `[2]`, total_steps,
      kl_weight) -> (loss, gradients, sweep): loss is minus the training
      bound's sum over the batch divided by total_steps, sweep that
      bound's `SweepResult`; a variable no sweep reaches gets None.

  Raises:
    ConfigError: for a proposal bound on a model without proposal
      variables of its own.
  """
  variables = list(model.trainable_variables)
  spec = bound_spec(config, config.bound, config.num_particles)
  other = config.proposal_bound and config.proposal_bound != config.bound
  if other:
    owned = {v.ref() for v in model.proposal_variables}
    if not owned:
      raise ConfigError(
          f"--proposal-bound {config.proposal_bound}: the {config.model} "
          "model has no proposal variables of its own to train with it.")
    proposal_spec = bound_spec(config, config.proposal_bound,
                               config.num_particles)
    groups = [(spec, [v for v in variables if v.ref() not in owned]),
              (proposal_spec, [v for v in variables if v.ref() in owned])]
  else:
    groups = [(spec, variables)]

  def objective(x, mask, seed, total_steps, kl_weight=None):
    gradients, loss, sweep = {}, None, None
    for i, (group_spec, group) in enumerate(groups):
      group_seed = (seed if i == 0 else
                    tf.random.experimental.stateless_fold_in(seed, 1 << 20))
      with tf.GradientTape() as tape:
        result = group_spec.sweep(
            model, x, mask, group_seed,
            batch_weight_gradients=batch_weight_gradients,
            kl_weight=kl_weight)
        group_loss = -tf.reduce_sum(result.log_marginal) / total_steps
      for v, g in zip(group, tape.gradient(group_loss, group)):
        gradients[v.ref()] = g
      if i == 0:
        loss, sweep = group_loss, result
    return loss, [gradients[v.ref()] for v in variables], sweep

  return variables, objective


def resolve_schedule(config, stored=None):
  """The config with its decay length fixed: `lr_decay_steps` 0 means the
  steps after the warm-up, resolved once when a run starts (a resumed run
  keeps the stored value, also when it is given --num-steps again)."""
  if config.lr_schedule == "constant" or config.lr_decay_steps:
    return config
  if stored is not None and stored.lr_decay_steps:
    return config.replace(lr_decay_steps=stored.lr_decay_steps)
  return config.replace(
      lr_decay_steps=max(config.num_steps - config.warmup_steps, 1))


def learning_rate_schedule(config):
  """The learning rate: a float (constant, no warm-up) or a tf_keras
  `LearningRateSchedule` of the update count (`optimizer.iterations`, which
  counts applied updates: a batch skipped under --on-nonfinite skip does not
  move it)."""
  rate = config.learning_rate
  decay_steps = config.lr_decay_steps or max(
      config.num_steps - config.warmup_steps, 1)
  if config.lr_schedule == "exponential":
    schedule = registry.SCHEDULES.load("exponential")(
        rate, decay_steps, config.lr_decay_rate)
  elif config.lr_schedule == "cosine":
    schedule = registry.SCHEDULES.load("cosine")(
        rate, decay_steps, alpha=config.lr_min_fraction)
  else:
    schedule = rate
  if config.warmup_steps:
    schedule = LinearWarmup(schedule, config.warmup_steps)
  return schedule


class LinearWarmup(tf_keras.optimizers.schedules.LearningRateSchedule):
  """Rises linearly to the schedule's first value over `warmup_steps`
  updates (update k, counted from 0, at (k + 1) / warmup_steps of it), then
  follows `schedule` from its own step 0.

  Args:
    schedule: a float or a `LearningRateSchedule`.
    warmup_steps: int > 0.
  """

  def __init__(self, schedule, warmup_steps):
    super().__init__()
    self.schedule = schedule
    self.warmup_steps = warmup_steps

  def _rate(self, step):
    if callable(self.schedule):
      return tf.cast(self.schedule(step), tf.float32)
    return tf.constant(self.schedule, tf.float32)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warmup = float(self.warmup_steps)
    return tf.where(step < warmup,
                    self._rate(tf.constant(0.)) * (step + 1.) / warmup,
                    self._rate(tf.maximum(step - warmup, 0.)))

  def get_config(self):
    schedule = self.schedule
    if callable(schedule):
      schedule = tf_keras.optimizers.schedules.serialize(schedule)
    return {"schedule": schedule, "warmup_steps": self.warmup_steps}

  @classmethod
  def from_config(cls, config):
    schedule = config["schedule"]
    if isinstance(schedule, dict):
      schedule = tf_keras.optimizers.schedules.deserialize(schedule)
    return cls(schedule, config["warmup_steps"])


def kl_weight_schedule(config):
  """The KL annealing weight of training as a function of the update count,
  or None where the config does not anneal (`kl_warmup_steps` 0).

  beta rises linearly from `kl_weight_start` at update 0 to 1 at update
  `kl_warmup_steps` and stays at 1: the training increment is log p(x_t |
  .) + beta * (log p(z_t | .) - log q(z_t | .)) (`seqlvm.smc.smc`), the
  bound itself from the end of the warm-up on. Like the learning rate it
  reads `optimizer.iterations`, so a resumed run continues its schedule.

  Returns:
    schedule: None (also for a model without latents, which has no latent
      term), or update count (int or tensor) -> float32 beta.
  """
  if not config.kl_warmup_steps or not registry.MODELS.meta(
      config.model, "has_latents"):
    return None
  start, steps = float(config.kl_weight_start), float(config.kl_warmup_steps)

  def schedule(update):
    done = tf.minimum(tf.cast(update, tf.float32) / steps, 1.)
    return start + (1. - start) * done

  return schedule


def make_optimizer(config, variables):
  """tf_keras' Adam under the config's learning-rate schedule, built for
  `variables` (its slots exist before a checkpoint restores them); with
  `config.weight_decay` > 0 tf_keras' AdamW, which also shrinks every
  variable by learning rate x weight_decay per update (decoupled weight
  decay, Loshchilov and Hutter 2019), the same slots otherwise.

  Returns:
    optimizer: the optimizer.
    current_rate: () -> float, the learning rate of the next update.
  """
  schedule = learning_rate_schedule(config)
  if config.weight_decay > 0:
    optimizer = tf_keras.optimizers.AdamW(
        schedule, weight_decay=config.weight_decay)
  else:
    optimizer = tf_keras.optimizers.Adam(schedule)
  optimizer.build(variables)

  def current_rate():
    if callable(schedule):
      return float(schedule(optimizer.iterations))
    return float(schedule)

  return optimizer, current_rate
