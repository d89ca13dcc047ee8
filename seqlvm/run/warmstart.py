"""Warm starts: a new run whose model starts from another run's checkpoint.

`seqlvm train --init-from SOURCE` (`Config.init_from`) initialises the new
run's model variables from SOURCE: a run directory (its best validation's
checkpoint, else its newest), a folder of checkpoints (its newest), or a
checkpoint (RUN_DIR/best/ckpt-N, RUN_DIR/kept/ckpt-N, RUN_DIR/ckpt/ckpt-N,
with or without ".index"). Only the model is read: the optimizer, the step,
the learning-rate schedule and the KL warm-up start afresh, so the new run
may train on another bound, rate or schedule (for example FIVO from an
IWAE-trained model).

The run stores the checkpoint's absolute path as `init_from`, so it can be
found again. It is read once, while the run has no checkpoint of its own;
once it has, a resumed run restores its own state, keeps the stored path,
and needs no source any more (it may have moved, or been deleted). Until
then SOURCE is resolved again at each start (a run's best checkpoint moves
on as it trains).

Recommended import: `from seqlvm.run import warmstart`.
"""

import os

import tensorflow as tf

from seqlvm import config as config_lib
from seqlvm import registry
from seqlvm.errors import CheckpointError
from seqlvm.errors import ConfigError
from seqlvm.run import best as best_lib
from seqlvm.run import rundir as rundir_lib

__all__ = ["resolve", "checkpoint_of", "initialise", "ARCHITECTURE_FIELDS"]

# The config fields that shape a model's variables: a warm-started run must
# agree with the run it starts from in each that its model uses.
ARCHITECTURE_FIELDS = ("model", "hidden_size", "latent_size", "latent",
                       "categories", "wavenet_channels", "wavenet_layers")
_INDEX = ".index"


def checkpoint_of(source):
  """The absolute checkpoint prefix that SOURCE names, and the run directory
  that holds it (None for a checkpoint outside a run directory).

  Raises:
    ConfigError: if SOURCE is neither a run directory with a checkpoint, a
      folder of checkpoints, nor a checkpoint.
  """
  source = os.path.abspath(os.fspath(source))
  if source.endswith(_INDEX) and os.path.isfile(source):
    source = source[:-len(_INDEX)]
  if os.path.isdir(source):
    run = rundir_lib.RunDir(source)
    found = (rundir_lib.checkpoint_files(run.file(best_lib.BEST_DIR)) or
             rundir_lib.checkpoint_files(run.ckpt_dir))
    if found:
      return found[-1], source
    found = rundir_lib.checkpoint_files(source)  # RUN_DIR/best, say.
    if found:
      return found[-1], _run_of(found[-1])
    raise ConfigError(f"--init-from {source}: no checkpoint there (neither "
                      f"it nor its {best_lib.BEST_DIR}/ or ckpt/ holds a "
                      "ckpt-N.index).")
  if not os.path.exists(source + _INDEX):
    raise ConfigError(
        f"--init-from {source}: not a run directory nor a checkpoint (no "
        f"{os.path.basename(source)}{_INDEX}; a run's best/ keeps only its "
        "newest checkpoint); give a run directory or a checkpoint that "
        "exists, such as RUN_DIR/best/ckpt-N or RUN_DIR/kept/ckpt-N.")
  return source, _run_of(source)


def _parent(prefix):
  """The folder above the checkpoint's folder: RUN_DIR for
  RUN_DIR/best/ckpt-N."""
  return os.path.dirname(os.path.dirname(prefix))


def _run_of(prefix):
  """The run directory holding the checkpoint `prefix`, or None."""
  parent = _parent(prefix)
  return parent if os.path.exists(
      os.path.join(parent, rundir_lib.CONFIG_NAME)) else None


def _uses(config, field):
  """Whether `config`'s model has variables shaped by `field`."""
  if field in ("model", "latent"):
    return True
  meta = registry.MODELS.meta
  if field == "hidden_size":
    return meta(config.model, "has_latents")
  if field == "latent_size":
    return meta(config.model, "has_latents") and config.latent == "gaussian"
  if field == "categories":
    return config.latent == "concrete"
  return meta(config.model, "wavenet")  # wavenet_channels, wavenet_layers


def _check_architecture(config, prefix, run_dir):
  if run_dir is None:
    return  # A bare checkpoint: the restore checks every variable.
  source = config_lib.load_config(os.path.join(run_dir,
                                               rundir_lib.CONFIG_NAME))
  differences = [
      f"{k} {getattr(source, k)!r} there, {getattr(config, k)!r} here"
      for k in ARCHITECTURE_FIELDS if getattr(source, k) != getattr(
          config, k) and (_uses(config, k) or _uses(source, k))]
  if differences:
    raise ConfigError(
        f"--init-from {prefix}: that run's model differs from this one's ("
        + "; ".join(differences) + "). Give the same model flags.")


def resolve(config, stored=None, trained=False, log=print):
  """`config` with `init_from` made the absolute checkpoint prefix it names.

  Args:
    config: the `Config` asked for; its `init_from` is a run directory, a
      checkpoint, or empty.
    stored: the run directory's stored `Config` when it is resumed, else
      None.
    trained: whether the run directory holds checkpoints of its own; its
      stored `init_from` is then kept, and another source is not used (a
      warning says so).
    log: callable for the warning.

  Raises:
    ConfigError: if the source is missing, or its run's model differs from
      the config's in a field of `ARCHITECTURE_FIELDS` that either model
      uses, or a run trained from a fresh initialisation is given one.
  """
  given = config.init_from
  if stored is not None and trained:
    if given and not stored.init_from:
      raise ConfigError(
          f"--init-from {given}: this run directory holds a run trained "
          "from a fresh initialisation; a warm start applies to a new run. "
          "Choose a new --run-dir.")
    if given and os.path.abspath(given) not in (stored.init_from,
                                                _parent(stored.init_from)):
      log(f"Warning: --init-from {given} is not used: the run resumes from "
          f"its own checkpoints (it started from {stored.init_from}).")
    return config.replace(init_from=stored.init_from)
  if not given:
    return config
  prefix, run_dir = checkpoint_of(given)
  _check_architecture(config, prefix, run_dir)
  return config.replace(init_from=prefix)


def initialise(model, prefix, log):
  """Reads every model variable from the checkpoint `prefix`.

  Raises:
    CheckpointError: if the checkpoint is gone or cannot be read, or does
      not hold every variable of this model in its shape.
  """
  if not os.path.exists(prefix + _INDEX):
    raise CheckpointError(
        f"--init-from {prefix}: the checkpoint is gone (a run's best/ keeps "
        "only its newest); give --init-from again with its run directory or "
        "a checkpoint that exists.")
  try:
    status = tf.train.Checkpoint(model=model).read(prefix)
    status.assert_existing_objects_matched().expect_partial()
  except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError,
          OSError) as e:
    first = (str(e).splitlines() or [""])[0][:300]
    raise CheckpointError(
        f"--init-from {prefix}: cannot initialise this run's model from it "
        f"({type(e).__name__}: {first}). It needs a checkpoint of the same "
        "model, sizes and emission, on data of the same width.") from e
  log(f"Initialised the model from {prefix} (step "
      f"{rundir_lib.checkpoint_number(prefix)}); the optimizer, the step and "
      "the schedules start afresh.")
