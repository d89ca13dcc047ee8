"""Run configuration: one frozen dataclass, stored as JSON in the run directory."""

import dataclasses
import json
import os

from seqlvm import fileio
from seqlvm import registry
from seqlvm.errors import ConfigError

__all__ = ["Config", "ConfigError", "RESUMABLE_FIELDS", "ADDED_FIELDS",
           "ignored_fields", "save_config", "load_config"]

# Fields that may differ when a run is resumed (e.g. to train for longer;
# init_from: `seqlvm.run.warmstart.resolve` decides what a resume keeps).
RESUMABLE_FIELDS = ("num_steps", "checkpoint_every", "summary_every",
                    "valid_every", "keep_checkpoints", "keep_every",
                    "on_nonfinite", "jit_compile", "precision",
                    "early_stopping", "valid_variance_sweeps",
                    "valid_samples", "init_from")
# Fields added after the first config format. A stored config without one
# gets what the code did before the field existed: its default, or the
# value in _BEFORE_FIELDS where the default does more (an older run keeps
# validating as it did); every other field must be stored (an incomplete
# config is refused).
ADDED_FIELDS = ("latent", "categories", "latent_temperature",
                "wavenet_channels", "wavenet_layers", "soft_mixing",
                "resampling_temperature", "max_length", "lr_schedule",
                "lr_decay_steps", "lr_decay_rate", "lr_min_fraction",
                "warmup_steps", "early_stopping", "valid_variance_sweeps",
                "valid_samples", "precision", "kl_warmup_steps",
                "kl_weight_start", "proposal_bound", "weight_decay",
                "keep_every", "init_from")
_BEFORE_FIELDS = {"valid_variance_sweeps": 0, "valid_samples": 0}


def _trains_fivo(c):
  """FIVO is the training bound or the proposal's."""
  return "fivo" in (c.bound, c.proposal_bound)


def _fivo_resamples(c):
  return _trains_fivo(c) and c.resampling != "never"


# When a field means something: (field, applies(config), the setting it
# needs). A flag given where it does not apply is named in a warning (not
# refused: a sweep may pass one set of flags to every model).
_APPLIES = (
    ("resampling", _trains_fivo, "--bound fivo"),
    ("threshold", lambda c: _trains_fivo(c) and c.resampling == "ess",
     "--bound fivo with --resampling ess"),
    ("scheme", _fivo_resamples,
     "--bound fivo with --resampling ess or always"),
    ("resampling_gradient", _fivo_resamples,
     "--bound fivo with --resampling ess or always"),
    ("soft_mixing", lambda c: _fivo_resamples(c) and (
        c.resampling_gradient == "soft"), "--resampling-gradient soft"),
    ("resampling_temperature", lambda c: _fivo_resamples(c) and (
        c.resampling_gradient == "concrete"),
     "--resampling-gradient concrete"),
    ("hidden_size", lambda c: registry.MODELS.meta(c.model, "has_latents"),
     "a model with latents (not --model wavenet)"),
    ("latent_size", lambda c: registry.MODELS.meta(c.model, "has_latents")
     and c.latent == "gaussian", "a Gaussian latent (not --model wavenet or "
     "--latent concrete)"),
    ("categories", lambda c: c.latent == "concrete", "--latent concrete"),
    ("latent_temperature", lambda c: c.latent == "concrete",
     "--latent concrete"),
    ("lr_decay_steps", lambda c: c.lr_schedule != "constant",
     "--lr-schedule exponential or cosine"),
    ("lr_decay_rate", lambda c: c.lr_schedule == "exponential",
     "--lr-schedule exponential"),
    ("lr_min_fraction", lambda c: c.lr_schedule == "cosine",
     "--lr-schedule cosine"),
    ("kl_weight_start", lambda c: c.kl_warmup_steps > 0,
     "--kl-warmup-steps > 0"),
    ("kl_warmup_steps", lambda c: registry.MODELS.meta(c.model, "has_latents"),
     "a model with latents (not --model wavenet)"),
    ("wavenet_channels", lambda c: registry.MODELS.meta(c.model, "wavenet"),
     "--model vrnn-wavenet or wavenet"),
    ("wavenet_layers", lambda c: registry.MODELS.meta(c.model, "wavenet"),
     "--model vrnn-wavenet or wavenet"),
)


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines a training run.

  Defaults follow the FIVO reference code where it has one (batch 4, N = 4,
  multinomial resampling at ESS < N/2, Adam at a constant learning rate),
  with a higher learning rate for short CPU runs: 1e-3, against 2e-4 in
  the reference's flags (research/fivo/run_fivo.py) and 1e-4 in its example
  script (bin/run_train.sh). `lr_schedule` is one of Keras' schedules
  (`seqlvm.registry.SCHEDULES`) after `warmup_steps` of linear warm-up;
  `lr_decay_steps` 0 decays over the steps after the warm-up (resolved and
  stored when the run starts, so a longer resumed run keeps its schedule).
  `early_stopping` > 0 stops when that many validations in a row have not
  improved on the best one (RUN_DIR/best keeps its model). At each
  validation, `valid_variance_sweeps` independent sweeps of the first
  sequences give the variance of log p_hat, and `valid_samples` samples go
  to TensorBoard (0 turns either off). Batches are padded to a
  multiple of 32 steps so that the XLA-compiled step meets few shapes.
  `max_length` > 0 cuts longer training sequences into pieces of at most
  that many steps (evaluation always uses whole sequences); 0 keeps them
  whole. `resampling_gradient` picks how FIVO's gradient treats the
  ancestor draw (`seqlvm.smc.resampling`); `soft_mixing` and
  `resampling_temperature` are the parameters of "soft" and "concrete".
  `latent="concrete"` gives the VRNN a relaxed one-hot latent over
  `categories` classes at `latent_temperature` (evaluated and sampled with
  the hard categorical). `precision` "bfloat16" trains with the
  networks' dense products in bfloat16, with float32 weights, activations
  and log weights (mixed precision, `seqlvm.models.nets`); a run may resume
  at another precision (its variables are float32 either way), and is
  evaluated and sampled in float32. `kl_warmup_steps` > 0 anneals the
  latent term of the training increment, log p(x_t | .) + beta *
  (log p(z_t | .) - log q(z_t | .)), with beta rising linearly from
  `kl_weight_start` to 1 over that many updates (KL warm-up, against
  posterior collapse; `seqlvm.run.factory.kl_weight_schedule`); validation
  and evaluation always use the bound itself, and early stopping counts only
  the validations after the warm-up. `proposal_bound` (empty: `bound`)
  trains the proposal's own variables (`SequenceModel.proposal_variables`)
  on another bound at the same N, and everything else on `bound`: each
  update then runs both sweeps (twice the cost). With bound "fivo" and
  proposal_bound "iwae" this is the ALT scheme of Le et al.'s
  auto-encoding SMC (2018), FIVO's gradient for the model and the IWAE's
  for the proposal (their proposal's gradient through a resampled sweep is
  weaker), taken in the same update where they alternate updates. A KL
  warm-up anneals both sweeps. Validation, early stopping and evaluation
  use `bound`. `weight_decay` > 0 trains with tf_keras' AdamW instead of
  Adam: each update also shrinks every variable by the learning rate
  times `weight_decay` (decoupled weight decay, against overfitting; not
  in FIVO's reference setting). `init_from` (empty: a fresh
  initialisation) is the absolute path of the checkpoint a warm-started
  run's model was initialised from (`seqlvm.run.warmstart`; given as a run
  directory or a checkpoint, resolved when the run starts); the optimizer,
  the step and the schedules start afresh.
  """
  data: str = "chorales"
  model: str = "vrnn"
  hidden_size: int = 64
  latent_size: int = 32
  latent: str = "gaussian"
  categories: int = 16
  latent_temperature: float = 0.67
  wavenet_channels: int = 32
  wavenet_layers: int = 6
  emission: str = "auto"
  bound: str = "fivo"
  num_particles: int = 4
  resampling: str = "ess"
  threshold: float = 0.5
  scheme: str = "multinomial"
  resampling_gradient: str = "stop"
  soft_mixing: float = 0.5
  resampling_temperature: float = 0.5
  proposal_bound: str = ""
  batch_size: int = 4
  learning_rate: float = 1e-3
  lr_schedule: str = "constant"
  lr_decay_steps: int = 0
  lr_decay_rate: float = 0.1
  lr_min_fraction: float = 0.
  warmup_steps: int = 0
  kl_warmup_steps: int = 0
  kl_weight_start: float = 0.
  clip_norm: float = 0.
  weight_decay: float = 0.
  num_steps: int = 2000
  checkpoint_every: int = 500
  summary_every: int = 25
  valid_every: int = 500
  early_stopping: int = 0
  valid_variance_sweeps: int = 4
  valid_samples: int = 2
  keep_checkpoints: int = 3
  keep_every: int = 0
  on_nonfinite: str = "stop"
  pad_to_multiple: int = 32
  max_length: int = 0
  jit_compile: bool = True
  precision: str = "float32"
  seed: int = 0
  init_from: str = ""

  def __post_init__(self):
    type_errors = []
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      type_name = f.type if isinstance(f.type, str) else f.type.__name__
      expected = {"int": int, "float": (int, float), "str": str,
                  "bool": bool}[type_name]
      if isinstance(value, bool) and expected is not bool:
        type_errors.append(f"{f.name} must be a number, got {value!r}")
      elif not isinstance(value, expected):
        type_errors.append(f"{f.name} must be {type_name}, got {value!r}")
    if type_errors:
      raise ConfigError("Invalid configuration: " + "; ".join(type_errors) +
                        ".")
    checks = [
        (self.model in registry.MODELS,
         f"model must be one of {registry.MODELS.names}"),
        (self.emission in registry.EMISSION_CHOICES,
         f"emission must be one of {registry.EMISSION_CHOICES}"),
        (self.bound in registry.BOUNDS,
         f"bound must be one of {registry.BOUNDS.names}"),
        (self.resampling in registry.CRITERIA,
         f"resampling must be one of {registry.CRITERIA.names}"),
        (self.scheme in registry.SCHEMES,
         f"scheme must be one of {registry.SCHEMES.names}"),
        (self.resampling_gradient in registry.GRADIENTS,
         f"resampling_gradient must be one of {registry.GRADIENTS.names}"),
        (self.proposal_bound in ("",) + registry.BOUNDS.names,
         f"proposal_bound must be empty (the bound) or one of "
         f"{registry.BOUNDS.names}"),
        (self.latent in registry.LATENTS,
         f"latent must be one of {registry.LATENTS.names}"),
        (self.precision in registry.PRECISIONS,
         f"precision must be one of {registry.PRECISIONS.names}"),
        (self.lr_schedule in registry.SCHEDULES,
         f"lr_schedule must be one of {registry.SCHEDULES.names}"),
        (0. < self.lr_decay_rate < float("inf"),
         "lr_decay_rate must be positive"),
        (0. <= self.lr_min_fraction <= 1., "lr_min_fraction must be in [0, 1]"),
        (0. <= self.kl_weight_start <= 1.,
         "kl_weight_start must be in [0, 1]"),
        (self.on_nonfinite in registry.ON_NONFINITE,
         f"on_nonfinite must be one of {registry.ON_NONFINITE.names}"),
        (0. <= self.soft_mixing <= 1., "soft_mixing must be in [0, 1]"),
        (0. < self.resampling_temperature < float("inf"),
         "resampling_temperature must be positive"),
        (self.categories >= 2, "categories must be >= 2"),
        (0. < self.latent_temperature < float("inf"),
         "latent_temperature must be positive"),
        (0. < self.threshold <= 1., "threshold must be in (0, 1]"),
        (self.learning_rate > 0., "learning_rate must be positive"),
        (self.clip_norm >= 0., "clip_norm must be >= 0 (0 = off)"),
        (0. <= self.weight_decay < float("inf"),
         "weight_decay must be >= 0 (0 = off)"),
        (not (self.early_stopping and not self.valid_every),
         "early_stopping counts validations: it needs valid_every > 0"),
        (0 <= self.seed < 2 ** 31, "seed must be in [0, 2**31)"),
    ]
    for name in ("hidden_size", "latent_size", "wavenet_channels",
                 "wavenet_layers", "num_particles", "batch_size",
                 "checkpoint_every", "summary_every", "keep_checkpoints",
                 "pad_to_multiple", "num_steps"):
      checks.append((int(getattr(self, name)) >= 1, f"{name} must be >= 1"))
    for name in ("valid_every", "max_length", "lr_decay_steps",
                 "warmup_steps", "kl_warmup_steps", "early_stopping",
                 "keep_every",
                 "valid_variance_sweeps", "valid_samples"):
      checks.append((int(getattr(self, name)) >= 0, f"{name} must be >= 0"))
    errors = [message for ok, message in checks if not ok]
    # The rules between fields, each written once (for known names).
    if self.resampling_gradient in registry.GRADIENTS and (
        self.scheme in registry.SCHEMES):
      errors.append(registry.gradient_scheme_problem(
          self.resampling_gradient, self.scheme))
    if (self.proposal_bound and self.model in registry.MODELS and
        not registry.MODELS.meta(self.model, "has_latents")):
      errors.append(f"proposal_bound {self.proposal_bound}: the "
                    f"{self.model} model has no latents, so no proposal")
    if self.model in registry.MODELS and self.latent in registry.LATENTS:
      errors.append(registry.latent_problem(self.model, self.latent))
    errors = [e for e in errors if e]
    if errors:
      raise ConfigError("Invalid configuration: " + "; ".join(errors) + ".")

  def replace(self, **changes):
    return dataclasses.replace(self, **changes)

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values, source="config"):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ConfigError(f"{source}: unknown fields {unknown}.")
    missing = sorted(names - set(values) - set(ADDED_FIELDS))
    if missing:
      raise ConfigError(
          f"{source}: incomplete config: {', '.join(missing)} missing. A "
          "run's config.json is written whole by `seqlvm train`; restore "
          "it, or train a new run.")
    values = {**{k: v for k, v in _BEFORE_FIELDS.items() if k not in values},
              **values}
    try:
      return cls(**values)
    except ConfigError as e:
      raise ConfigError(f"{source}: {e}") from e


def ignored_fields(config, given):
  """The given fields that `config`'s other settings make meaningless.

  Args:
    config: the `Config`.
    given: the names of the fields the user set explicitly.

  Returns:
    ignored: a list of (field, the setting it needs).
  """
  return [(name, needs) for name, applies, needs in _APPLIES
          if name in given and not applies(config)]


def save_config(config, path):
  """Writes the config as JSON, atomically."""
  fileio.write_json(config.to_dict(), path)


def load_config(path):
  """Reads a config written by `save_config`.

  Raises:
    ConfigError: naming the file, if it is missing or unreadable.
  """
  if not os.path.exists(path):
    raise ConfigError(f"{path}: no config here; is this a run directory made "
                      "by `seqlvm train`?")
  try:
    with open(path) as f:
      values = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ConfigError(f"{path}: unreadable config ({e}).") from e
  if not isinstance(values, dict):
    raise ConfigError(f"{path}: expected a JSON object.")
  return Config.from_dict(values, source=path)
