"""Warm starts: a new run whose model starts from another run's checkpoint.

`seqlvm train --init-from SOURCE` (`Config.init_from`) initialises the new
run's model variables from SOURCE: a run directory (its best validation's
checkpoint, else its newest) or a checkpoint path (RUN_DIR/best/ckpt-N,
RUN_DIR/kept/ckpt-N, RUN_DIR/ckpt/ckpt-N). Only the model is read: the
optimizer, the step, the learning-rate schedule and the KL warm-up start
afresh, so the new run may train on another bound, rate or schedule (for
example FIVO from an IWAE-trained model).

The run stores the checkpoint's absolute path as `init_from`, so it can be
found again. It is applied once, when the run has no checkpoint of its own;
a resumed run restores its own state. Resuming with the same SOURCE (whose
best checkpoint may have moved on since) keeps the stored path.

Recommended import: `from seqlvm.run import warmstart`.
"""

import os

import tensorflow as tf

from seqlvm import config as config_lib
from seqlvm.errors import CheckpointError
from seqlvm.errors import ConfigError
from seqlvm.run import best as best_lib
from seqlvm.run import rundir as rundir_lib

__all__ = ["resolve", "checkpoint_of", "initialise", "ARCHITECTURE_FIELDS"]

# The config fields that shape a model's variables: a warm-started run must
# agree with the run it starts from in each.
ARCHITECTURE_FIELDS = ("model", "hidden_size", "latent_size", "latent",
                       "categories", "wavenet_channels", "wavenet_layers")


def checkpoint_of(source):
  """The absolute checkpoint prefix that SOURCE names, and the run directory
  that holds it (None for a checkpoint outside a run directory).

  Raises:
    ConfigError: if SOURCE is neither a run directory with a checkpoint nor
      a checkpoint prefix.
  """
  source = os.path.abspath(os.fspath(source))
  if os.path.isdir(source):
    run = rundir_lib.RunDir(source)
    found = (rundir_lib.checkpoint_files(run.file(best_lib.BEST_DIR)) or
             rundir_lib.checkpoint_files(run.ckpt_dir))
    if not found:
      raise ConfigError(f"--init-from {source}: no checkpoint there (neither "
                        f"{best_lib.BEST_DIR}/ nor ckpt/ holds one).")
    return found[-1], source
  if not os.path.exists(source + ".index"):
    raise ConfigError(
        f"--init-from {source}: not a run directory nor a checkpoint (no "
        f"{os.path.basename(source)}.index); give a run directory or a "
        "checkpoint such as RUN_DIR/best/ckpt-N or RUN_DIR/kept/ckpt-N.")
  return source, _run_of(source)


def _run_of(prefix):
  """The run directory holding the checkpoint `prefix`, or None."""
  parent = os.path.dirname(os.path.dirname(prefix))
  return parent if os.path.exists(
      os.path.join(parent, rundir_lib.CONFIG_NAME)) else None


def resolve(config, stored=None):
  """`config` with `init_from` made the absolute checkpoint prefix it names.

  Args:
    config: the `Config` asked for; its `init_from` is a run directory, a
      checkpoint prefix, or empty.
    stored: the run directory's stored `Config` when it is resumed, else
      None. Asking again for the run (or the checkpoint) it was started
      from keeps the stored checkpoint.

  Raises:
    ConfigError: if the source is missing, or its run's model differs from
      the config's in a field of `ARCHITECTURE_FIELDS`.
  """
  if not config.init_from:
    return config
  given = os.path.abspath(config.init_from)
  if stored is not None and stored.init_from and given in (
      stored.init_from, _run_of(stored.init_from)):
    return config.replace(init_from=stored.init_from)
  prefix, run_dir = checkpoint_of(given)
  if run_dir is not None:
    source = config_lib.load_config(os.path.join(run_dir, rundir_lib.CONFIG_NAME))
    differences = [f"{k} {getattr(source, k)!r} there, {getattr(config, k)!r}"
                   " here" for k in ARCHITECTURE_FIELDS
                   if getattr(source, k) != getattr(config, k)]
    if differences:
      raise ConfigError(
          f"--init-from {prefix}: that run's model differs from this one's ("
          + "; ".join(differences) + "). Give the same model flags.")
  return config.replace(init_from=prefix)


def initialise(model, prefix, log):
  """Reads every model variable from the checkpoint `prefix`.

  Raises:
    CheckpointError: if the checkpoint cannot be read, or does not hold
      every variable of this model in its shape.
  """
  try:
    status = tf.train.Checkpoint(model=model).read(prefix)
    status.assert_existing_objects_matched().expect_partial()
  except (tf.errors.OpError, ValueError, AssertionError) as e:
    raise CheckpointError(
        f"--init-from {prefix}: cannot initialise this run's model from it "
        f"({type(e).__name__}: {str(e).splitlines()[0][:300]}). It needs a "
        "checkpoint of the same model, sizes and emission, on data of the "
        "same width.") from e
  log(f"Initialised the model from {prefix} (step "
      f"{rundir_lib.checkpoint_number(prefix)}); the optimizer, the step and "
      "the schedules start afresh.")
