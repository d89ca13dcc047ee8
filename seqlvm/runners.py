"""Train, evaluate and sample, each from a run directory.

A run directory holds everything a run needs afterwards:

    RUN_DIR/config.json          the Config (so eval and sample need nothing else)
    RUN_DIR/data.json            where the data is and its fingerprint (checked
                                 by a resumed run, eval and sample)
    RUN_DIR/lock                 held while a training writes to the run
    RUN_DIR/ckpt/                tf.train.CheckpointManager checkpoints
    RUN_DIR/train/, RUN_DIR/valid/   TensorBoard summaries
    RUN_DIR/eval/SPLIT_nN.json   results of `evaluate`
    RUN_DIR/samples/             output of `sample` (by default)

Checkpoints hold the model, the optimizer, the step and the input iterator,
so a resumed run continues exactly where it stopped. TensorFlow writes each
checkpoint to temporary files and only then updates the index atomically, so
a run killed while saving keeps its previous checkpoint; a checkpoint that
fails to restore is reported by name and the next older one is used.

The rules of the run directory (one writer, the data record, checkpoint
pruning) are in `seqlvm.rundir`; every file is written atomically through
`seqlvm.fileio`, whose `WriteError` names what could not be written.

The runners take an injectable `make_dataset_and_model(config)` (as FIVO's
`create_dataset_and_model_fn`) so tests and other datasets can plug in.
"""

import dataclasses
import os
import re
import sys
import time

import numpy as np
import tensorflow as tf

from seqlvm import bounds
from seqlvm import data as data_lib
from seqlvm import fileio
from seqlvm import models
from seqlvm import rundir
from seqlvm import shapes
from seqlvm.config import ConfigError
from seqlvm.config import RESUMABLE_FIELDS
from seqlvm.config import load_config
from seqlvm.config import save_config

__all__ = [
    "train", "evaluate", "sample", "make_dataset_and_model",
    "TrainingError", "CheckpointError", "SamplingBudgetError", "TrainResult",
]

CONFIG_NAME = "config.json"
DATA_RECORD = rundir.DATA_RECORD
_SYNTH_RATE = 22050
# Files that `sample` writes (and removes again when a later call writes
# fewer): listed in SAMPLES_RECORD in the output folder.
SAMPLES_RECORD = "samples.json"
_SAMPLE_FILE = re.compile(r"^sample_\d{2,}\.(mid|png|wav)$")


class TrainingError(RuntimeError):
  """Training stopped (a non-finite bound or gradient, say)."""


class CheckpointError(RuntimeError):
  """No usable checkpoint; the message names the files."""


@dataclasses.dataclass
class TrainResult:
  step: int
  checkpoint: str
  train_bound_per_timestep: float
  valid_bound_per_timestep: float = float("nan")
  skipped_steps: int = 0
  trained_steps: int = 0  # steps run by this call (0: nothing to train)


def make_dataset_and_model(config):
  """The default: a dataset by name or path (pianorolls or prepared speech)
  and a VRNN for it."""
  source = data_lib.open_source(data_lib.resolve(config.data))
  model = build_model(config, data_size=source.data_size,
                      data_mean=source.train_mean,
                      emission=resolve_emission(config, source))
  return source, model


def resolve_emission(config, source):
  """The config's emission, or the data's natural one for "auto"."""
  source = data_lib.as_source(source)
  if config.emission == "auto":
    return source.default_emission
  if config.emission == "bernoulli" and getattr(source, "kind", "") != (
      "pianoroll"):
    raise ConfigError(
        f"{config.data}: a Bernoulli emission needs binary data (pianorolls)"
        f"; this is {getattr(source, 'kind', 'real-valued')} data. Use "
        "--emission gaussian (or auto).")
  return config.emission


def build_model(config, data_size, data_mean, emission=None):
  """The model `config.model` names, for data of size `data_size`."""
  emission = emission or config.emission
  if emission == "auto":
    emission = "bernoulli"
  common = dict(emission=emission, data_mean=data_mean, seed=config.seed)
  latent = dict(hidden_size=config.hidden_size,
                latent_size=config.latent_size)
  # Dilations 1, 2, 4, ...: a receptive field of 2**wavenet_layers + 1 steps.
  wavenet = dict(channels=config.wavenet_channels,
                 dilations=tuple(2 ** i for i in range(config.wavenet_layers)))
  discrete = dict(latent=config.latent, categories=config.categories,
                  temperature=config.latent_temperature)
  if config.model == "vrnn":
    return models.VRNN(data_size, **latent, **discrete, **common)
  if config.model == "srnn":
    return models.SRNN(data_size, **latent, **common)
  if config.model == "draw":
    return models.DRAW(data_size, **latent, **common)
  if config.model == "vrnn-wavenet":
    return models.VRNNWaveNet(data_size, **latent, **wavenet, **discrete,
                              **common)
  if config.model == "wavenet":
    return models.WaveNet(data_size, **wavenet, **common)
  raise ConfigError(f"Unknown model {config.model!r}.")


def _bound_fn(config, name, num_particles, training=True):
  """The bound as (model, x, mask, seed) -> [B].

  Training uses the configured resampling gradient; evaluation always uses
  "stop", whose value is the particle filter's log p_hat ("concrete" mixes
  particles and "soft" reweights them, which changes the estimate itself).
  """
  fivo_kwargs = {}
  if name == "fivo":
    fivo_kwargs = dict(resampling=config.resampling,
                       threshold=config.threshold, scheme=config.scheme)
    if training:
      fivo_kwargs.update(resampling_gradient=config.resampling_gradient,
                         soft_mixing=config.soft_mixing,
                         resampling_temperature=config.resampling_temperature)

  def fn(model, x, mask, seed):
    return bounds.bound(name, model, x, mask, num_particles=num_particles,
                        seed=seed, **fivo_kwargs)

  return fn


def _signature(data_size, batch_size):
  # A static batch size keeps TFP's resamplers on their static-shape path;
  # evaluation pads its last batch with empty sequences to match.
  return [tf.TensorSpec([None, batch_size, data_size], tf.float32),
          tf.TensorSpec([batch_size], tf.int32),
          tf.TensorSpec([2], tf.int32)]


class _Evaluator:
  """Compiled bound evaluation over whole splits, cached per (bound, N).

  Evaluation runs as a TensorFlow graph without XLA: XLA compiles once per
  padded length (seconds each), which a single pass over a split of many
  lengths never earns back (measured in experiments/bench_train.py).
  """

  def __init__(self, model, config, data_size):
    # A model with relaxed latents is evaluated with hard ones.
    self._model = model.for_evaluation()
    self._config = config
    self._data_size = data_size
    self._fns = {}

  def _fn(self, name, num_particles, batch_size):
    key = (name, num_particles, batch_size)
    if key not in self._fns:
      bound_fn = _bound_fn(self._config, name, num_particles, training=False)
      model = self._model

      @tf.function(jit_compile=False,
                   input_signature=_signature(self._data_size, batch_size))
      def evaluate_batch(x, lengths, seed):
        mask = shapes.sequence_mask(lengths, tf.shape(x)[0])
        return bound_fn(model, x, mask, seed)

      self._fns[key] = evaluate_batch
    return self._fns[key]

  def __call__(self, source, split, name, num_particles, batch_size, seed=0,
               progress=False, label=""):
    """Returns (nats per timestep, nats per sequence, bounds [num_seqs]).

    The bounds come in the order of the length-bucketed batches, not the
    split's order.
    """
    fn = self._fn(name, num_particles, batch_size)
    ds = source.eval_dataset(split, batch_size,
                             pad_to_multiple=self._config.pad_to_multiple)
    bar = None
    if progress:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      bar = tqdm(total=source.num_sequences(split), desc=label or name,
                 unit="seq", leave=False, file=sys.stderr)
    results, total_steps = [], 0
    try:
      for i, (x, lengths, real) in enumerate(ds):
        batch_seed = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, 7919], tf.int32), i)
        real = real.numpy()
        results.append(fn(x, lengths, batch_seed).numpy()[real])
        total_steps += int(tf.reduce_sum(lengths))
        if bar is not None:
          bar.update(int(real.sum()))
    except tf.errors.OpError as e:
      raise _read_error(source, f"the {split!r} split", e) from e
    finally:
      if bar is not None:
        bar.close()
    per_sequence = np.concatenate(results).astype(np.float64)
    if not np.all(np.isfinite(per_sequence)):
      bad = int(np.sum(~np.isfinite(per_sequence)))
      raise TrainingError(f"The {name} bound is not finite for {bad} "
                          f"sequence(s) of {label or split}.")
    return (per_sequence.sum() / max(total_steps, 1), per_sequence.mean(),
            per_sequence)


def _read_error(source, what, error):
  """A DataError naming the data for a TensorFlow error while reading it."""
  message = getattr(error, "message", "") or str(error)
  found = re.search(r"assertion failed: \[([^\]]*)\]", message)
  if found:  # One of our own checks on the data.
    detail = found.group(1).replace("\\'", "'")
  else:
    lines = message.strip().splitlines()
    detail = f"{type(error).__name__}: {lines[0] if lines else ''}"
  return data_lib.DataError(
      f"{getattr(source, 'name', '') or 'the data'}: reading {what} failed "
      f"({detail}). Is a file damaged? Prepare the data again (for speech: "
      "seqlvm data from-audio ... --force).")


def _check_data(source, config, run_dir, purpose="resume"):
  """Refuses data whose fingerprint differs from RUN_DIR/data.json's;
  for training, records the data (where it is, fingerprint, pipeline).

  Returns:
    stored: the record found before (empty for a new run or an older one).

  Raises:
    DataMismatchError: naming both, if the data changed.
  """
  current = rundir.data_record(source, config.data)
  stored = rundir.check_data(run_dir, current, purpose)
  if purpose == "resume" and stored != current:
    fileio.write_json(current, os.path.join(run_dir, DATA_RECORD))
  return stored


def _checkpoint_manager(checkpoint, run_dir, max_to_keep=3):
  directory = os.path.join(run_dir, "ckpt")
  try:
    return tf.train.CheckpointManager(checkpoint, directory,
                                      max_to_keep=max_to_keep)
  except (tf.errors.OpError, ValueError) as e:
    raise CheckpointError(
        f"{os.path.join(directory, 'checkpoint')}: unreadable checkpoint "
        f"index ({type(e).__name__}); move it aside to restore from a "
        "specific checkpoint file.") from e


def _restore_latest(checkpoint, manager, partial=False, log=None):
  """Restores the newest checkpoint that loads; returns its path or None.

  The candidates are the checkpoints the index names, newest first, then any
  other ckpt-N files in the directory, newest first (the index may be lost or
  damaged: TensorFlow then reports no checkpoints).
  """
  listed = [os.path.abspath(p) for p in reversed(manager.checkpoints)]
  others = [f for f in reversed(rundir.checkpoint_files(manager.directory))
            if f not in listed]
  if not listed and others and log:
    log(f"Warning: {os.path.join(manager.directory, 'checkpoint')} is "
        "missing or unreadable; trying the checkpoint files themselves.")
  candidates = listed + others
  failures = []
  for path in candidates:
    try:
      status = checkpoint.restore(path)
      if partial:
        status.expect_partial()
      else:
        status.assert_existing_objects_matched()
      if failures and log:
        log(f"Restored the older checkpoint {path} instead.")
      return path
    except (tf.errors.OpError, ValueError, AssertionError, IndexError,
            KeyError, OSError) as e:
      failures.append(f"{path}: {type(e).__name__}: {str(e).splitlines()[0]}")
      if log:
        log(f"Warning: checkpoint {path} could not be restored "
            f"({type(e).__name__}); trying an older one.")
  if failures:
    raise CheckpointError("No checkpoint could be restored:\n  " +
                          "\n  ".join(failures))
  return None


def _check_resume(config, run_dir):
  path = os.path.join(run_dir, CONFIG_NAME)
  if not os.path.exists(path):
    return
  stored = load_config(path)
  # An older run may store its data as a relative path: compare what both
  # name from here (the data's fingerprint is checked as well).
  stored = stored.replace(data=data_lib.canonical(stored.data))
  differences = [
      f"{k}: stored {v!r}, given {getattr(config, k)!r}"
      for k, v in stored.to_dict().items()
      if k not in RESUMABLE_FIELDS and getattr(config, k) != v]
  if differences:
    raise ConfigError(
        f"{path}: this run directory holds a run with another configuration "
        "(" + "; ".join(differences) + "). Resume it with the same settings "
        "or choose a new --run-dir.")


def train(config, run_dir, make_dataset_and_model=make_dataset_and_model,
          progress=True, log=None, max_seconds=None):
  """Trains (or resumes) a run.

  Training is the one writer of its run directory: it holds RUN_DIR/lock
  (`seqlvm.rundir.RunLock`) from start to end, and a second training of the
  same directory is refused.

  Args:
    config: a `Config`. A `data` path is stored absolute.
    run_dir: the run directory; an existing run there is resumed.
    make_dataset_and_model: config -> (dataset with .train/.valid lists of
      `[T, D]` arrays, model).
    progress: show a progress bar. Default value: True.
    log: callable for messages. Default value: print to stderr.
    max_seconds: optional wall-clock budget (> 0); training stops (with a
      checkpoint) once it is spent, and can be resumed later.

  Returns:
    result: a `TrainResult`; `trained_steps` is 0 when the run was already
      at `config.num_steps`.

  Raises:
    ConfigError: if run_dir holds a run with another configuration, is
      already past `config.num_steps`, the batch is larger than the
      training split, or `max_seconds` is not positive.
    DataMismatchError: if the data is not the data the run was trained on.
    RunLockedError: if another process is training run_dir.
    WriteError: if run_dir (or a checkpoint) cannot be written.
    CheckpointError: if checkpoints exist but none restores.
    TrainingError: on a non-finite bound or gradient (with
      on_nonfinite="stop"), naming the step; the last good state is saved.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  if log is None:
    log = lambda message: tqdm.write(message, file=sys.stderr)
  if max_seconds is not None:
    _check_budget(max_seconds)
  config = config.replace(data=data_lib.canonical(config.data))
  _check_resume(config, run_dir)
  created = not os.path.exists(run_dir)
  fileio.check_writable_dir(run_dir, "run directory")
  try:
    with rundir.RunLock(run_dir, log=log):
      return _train(config, run_dir, make_dataset_and_model, progress, log,
                    max_seconds)
  except BaseException:
    if created and not os.listdir(run_dir):  # Refused before writing.
      os.rmdir(run_dir)
    raise


def _check_budget(max_seconds):
  if not max_seconds > 0:
    raise ConfigError(f"The time budget (--max-minutes) must be positive, "
                      f"got {max_seconds / 60:g} minutes.")


def _training_pieces(source, max_length):
  """How many training sequences (or pieces of at most max_length) there
  are to batch."""
  lengths = source.lengths("train")
  if not max_length:
    return len(lengths)
  return int(sum(max(1, -(-int(n) // max_length)) for n in lengths))


def _check_batch_size(source, config):
  pieces = _training_pieces(source, config.max_length)
  if config.batch_size > pieces:
    what = (f"{pieces} pieces of at most {config.max_length} steps"
            if config.max_length else f"{pieces} sequences")
    raise ConfigError(
        f"{getattr(source, 'name', '') or config.data}: --batch-size "
        f"{config.batch_size} is larger than the training split ({what}); a "
        "batch would repeat sequences. Use --batch-size "
        f"{min(pieces, config.batch_size)} or less.")


def _train(config, run_dir, make_dataset_and_model, progress, log,
           max_seconds):
  """`train` inside the run's lock."""
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  dataset, model = make_dataset_and_model(config)
  source = data_lib.as_source(dataset)
  data_size = source.data_size
  _check_batch_size(source, config)
  resuming = os.path.exists(os.path.join(run_dir, CONFIG_NAME))
  stored_data = _check_data(source, config, run_dir)
  same_pipeline = stored_data.get("pipeline") == rundir.pipeline_id(source)
  save_config(config, os.path.join(run_dir, CONFIG_NAME))

  optimizer = tf_keras.optimizers.Adam(config.learning_rate)
  optimizer.build(model.trainable_variables)

  step = tf.Variable(0, dtype=tf.int64, name="step")
  train_ds = source.train_dataset(
      config.batch_size, seed=config.seed,
      pad_to_multiple=config.pad_to_multiple, max_length=config.max_length)
  iterator = iter(train_ds)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                   step=step, data_iterator=iterator)
  _adopt_checkpoints(run_dir, log)
  manager = _checkpoint_manager(checkpoint, run_dir, config.keep_checkpoints)
  if not resuming or same_pipeline:
    restored = _restore_latest(checkpoint, manager, log=log)
  else:
    # Checkpoints of another input pipeline (an older seqlvm, say): its
    # saved state cannot drive this one. Keep the model, the optimizer and
    # the step, and start the data order afresh.
    restored = _restore_latest(
        tf.train.Checkpoint(model=model, optimizer=optimizer, step=step),
        manager, partial=True, log=log)
    if restored:
      log(f"Warning: {restored} holds the state of another input pipeline "
          f"({stored_data.get('pipeline') or 'an older seqlvm'}); model, "
          "optimizer and step restored, the data order starts afresh.")
  if restored:
    log(f"Resuming {run_dir} from {restored} at step {int(step)}.")
  if int(step) > config.num_steps:
    raise ConfigError(
        f"{restored}: this run is at step {int(step)}, past --num-steps "
        f"{config.num_steps}; give a larger --num-steps to train further "
        "(its checkpoints are kept).")
  if int(step) == config.num_steps:
    log(f"{run_dir} is already at step {int(step)} (--num-steps "
        f"{config.num_steps}): nothing to train. Give a larger --num-steps "
        "to train further.")
    return TrainResult(step=int(step), checkpoint=restored or "",
                       train_bound_per_timestep=float("nan"))

  train_step = make_train_step(model, optimizer, config, data_size,
                               mode="xla" if config.jit_compile else "graph")

  evaluator = _Evaluator(model, config, data_size)
  writer = tf.summary.create_file_writer(os.path.join(run_dir, "train"))
  valid_writer = tf.summary.create_file_writer(os.path.join(run_dir, "valid"))
  ckpt_dir = os.path.join(run_dir, "ckpt")
  # A checkpoint is written only when an update was applied since the last
  # one: batches skipped under --on-nonfinite skip change nothing worth one.
  state = {"changed": False, "last_applied": int(step) if restored else None,
           "checkpoint": restored or ""}

  def save():
    if state["changed"] or not state["checkpoint"]:
      try:
        state["checkpoint"] = manager.save(checkpoint_number=int(step))
      except (tf.errors.OpError, OSError) as e:
        message = getattr(e, "message", "") or str(e)
        raise fileio.WriteError(
            f"{ckpt_dir}: cannot write the checkpoint of step {int(step)} "
            f"({type(e).__name__}: {message.splitlines()[0]}); the "
            "previous checkpoint is kept.") from e
      state["changed"] = False
    return state["checkpoint"]

  def validate():
    if not source.num_sequences("valid"):
      return float("nan")
    try:
      per_t, per_seq, _ = evaluator(source, "valid", config.bound,
                                    config.num_particles, config.batch_size,
                                    seed=config.seed)
    except (TrainingError, data_lib.DataError) as e:
      # A NaN or a damaged file in validation must not end the run.
      log(f"Warning: step {int(step)}: validation failed: {e}")
      return float("nan")
    with valid_writer.as_default(step=int(step)):
      tf.summary.scalar(f"{config.bound}_per_timestep", per_t)
      tf.summary.scalar(f"{config.bound}_per_sequence", per_seq)
    log(f"step {int(step)}: valid {config.bound} {per_t:.4f} nats/step, "
        f"{per_seq:.2f} nats/sequence")
    return per_t

  def good_state():
    """Where the last good state is, for messages."""
    path = save()
    if state["last_applied"] is None:
      return f"no update was applied; the initial state is saved in {path}"
    return (f"the last good state (after the update of step "
            f"{state['last_applied']}) is saved in {path}")

  bar = tqdm(total=config.num_steps, initial=int(step), desc="train",
             disable=not progress, file=sys.stderr, dynamic_ncols=True)
  window, skipped, consecutive_skips = [], 0, 0
  last_window_mean = float("nan")
  valid_per_t, last_valid_step = float("nan"), None
  start_time, start_step = time.time(), int(step)
  try:
    while int(step) < config.num_steps:
      if max_seconds is not None and time.time() - start_time > max_seconds:
        log(f"Time budget of {max_seconds:.0f} s spent at step {int(step)}.")
        break
      try:
        x, lengths = next(iterator)
      except StopIteration as e:  # The training input repeats forever.
        raise TrainingError("The training input ended unexpectedly at step "
                            f"{int(step) + 1}.") from e
      except tf.errors.OpError as e:
        raise _read_error(source, f"the training data at step "
                          f"{int(step) + 1} ({good_state()})", e) from e
      seed = tf.constant([config.seed, int(step)], tf.int32)
      bound_per_t, grad_norm, applied = train_step(x, lengths, seed)
      if bool(applied):
        state["changed"], state["last_applied"] = True, int(step) + 1
        consecutive_skips = 0
        window.append(float(bound_per_t))
      else:
        message = (f"non-finite {config.bound} bound ({float(bound_per_t)}) "
                   f"or gradient norm ({float(grad_norm)}) at step "
                   f"{int(step) + 1}")
        if config.on_nonfinite == "stop":
          raise TrainingError(
              f"Training stopped: {message}. The update was not applied; "
              f"{good_state()}. Rerun with --on-nonfinite skip to skip such "
              "batches, or lower the learning rate.")
        skipped += 1
        consecutive_skips += 1
        log(f"Warning: skipped the batch at step {int(step) + 1}: {message}.")
        if consecutive_skips >= 20:
          raise TrainingError(
              f"Training stopped: 20 consecutive non-finite batches (steps "
              f"{int(step) - 18} to {int(step) + 1}); {good_state()}.")
      step.assign_add(1)
      bar.update(1)
      current = int(step)
      if window and (current % config.summary_every == 0 or
                     current == config.num_steps):
        last_window_mean = float(np.mean(window))
        window = []
        elapsed = time.time() - start_time
        with writer.as_default(step=current):
          tf.summary.scalar(f"{config.bound}_per_timestep", last_window_mean)
          tf.summary.scalar("grad_norm", grad_norm)
          tf.summary.scalar("steps_per_second",
                            (current - start_step) / max(elapsed, 1e-9))
        bar.set_postfix({f"{config.bound}/step": f"{last_window_mean:.3f}"})
      if current % config.checkpoint_every == 0:
        save()
      if config.valid_every and current % config.valid_every == 0:
        valid_per_t, last_valid_step = validate(), current
    save()
  except KeyboardInterrupt:
    # No lost work: keep what was trained since the last checkpoint.
    log(f"Interrupted at step {int(step)}; saved {save()}.")
    raise
  finally:
    bar.close()
    writer.flush()
    valid_writer.flush()
  if config.valid_every and last_valid_step != int(step):
    valid_per_t = validate()
  if window:
    last_window_mean = float(np.mean(window))
  return TrainResult(step=int(step), checkpoint=state["checkpoint"],
                     train_bound_per_timestep=last_window_mean,
                     valid_bound_per_timestep=valid_per_t,
                     skipped_steps=skipped,
                     trained_steps=int(step) - start_step)


def _adopt_checkpoints(run_dir, log):
  """Brings checkpoints a lost index forgot back under --keep-checkpoints."""
  directory = os.path.join(run_dir, "ckpt")
  try:
    adopted = rundir.adopt_checkpoints(directory)
  except (tf.errors.OpError, OSError) as e:
    raise fileio.WriteError(f"{os.path.join(directory, 'checkpoint')}: cannot "
                            f"rebuild the checkpoint index ({e}).") from e
  if adopted:
    names = ", ".join(os.path.basename(p) for p in adopted)
    log(f"Warning: {os.path.join(directory, 'checkpoint')} is missing or "
        f"unreadable, or did not list {names}; listed "
        f"{'them' if len(adopted) > 1 else 'it'} again, so they count "
        "against --keep-checkpoints.")


def make_train_step(model, optimizer, config, data_size, mode="xla"):
  """The training step: bound, gradient, finiteness check, Adam update.

  Args:
    model: the model.
    optimizer: a built tf_keras optimizer.
    config: the `Config` (bound, particles, clipping, batch size).
    data_size: int D.
    mode: "xla" (one XLA-compiled `tf.function`), "graph" (a `tf.function`
      without XLA) or "eager" (no `tf.function`: the sweep's while loop runs
      step by step in Python; the benchmarks' baseline).

  Returns:
    train_step: (x `[T, B, D]`, lengths `[B]`, seed `[2]`) ->
      (bound per timestep, gradient norm, applied); the update is applied
      only when the bound and the gradient norm are finite.
  """
  variables = model.trainable_variables
  bound_fn = _bound_fn(config, config.bound, config.num_particles)

  def train_step(x, lengths, seed):
    mask = shapes.sequence_mask(lengths, tf.shape(x)[0])
    with tf.GradientTape() as tape:
      per_sequence = bound_fn(model, x, mask, seed)
      num_steps = tf.maximum(tf.reduce_sum(tf.cast(lengths, tf.float32)), 1.)
      loss = -tf.reduce_sum(per_sequence) / num_steps
    grads = tape.gradient(loss, variables)
    grad_norm = tf.linalg.global_norm(grads)
    finite = tf.logical_and(tf.math.is_finite(loss),
                            tf.math.is_finite(grad_norm))
    if config.clip_norm > 0:
      grads, _ = tf.clip_by_global_norm(grads, config.clip_norm,
                                        use_norm=grad_norm)

    def apply():
      optimizer.apply_gradients(zip(grads, variables))
      return tf.constant(True)

    applied = tf.cond(finite, apply, lambda: tf.constant(False))
    return -loss, grad_norm, applied

  if mode == "eager":
    return train_step
  if mode not in ("xla", "graph"):
    raise ValueError(f"mode must be xla, graph or eager, got {mode!r}.")
  return tf.function(train_step, jit_compile=(mode == "xla"),
                     input_signature=_signature(data_size, config.batch_size))


def _load_run(run_dir, make_dataset_and_model, log, purpose):
  """The run's config, data (checked against its record), model restored
  from the newest checkpoint that loads, and that checkpoint's path."""
  config = load_config(os.path.join(run_dir, CONFIG_NAME))
  # Runs store their data as a name or an absolute path; an older run's
  # relative path is taken from here, and its fingerprint decides.
  config = config.replace(data=data_lib.canonical(config.data))
  dataset, model = make_dataset_and_model(config)
  dataset = data_lib.as_source(dataset)
  if not _check_data(dataset, config, run_dir, purpose):
    log(f"Warning: {os.path.join(run_dir, DATA_RECORD)} is missing (a run "
        "of an older seqlvm): cannot check that this is the run's data.")
  checkpoint = tf.train.Checkpoint(model=model)
  manager = _checkpoint_manager(checkpoint, run_dir)
  path = _restore_latest(checkpoint, manager, partial=True, log=log)
  if path is None:
    raise CheckpointError(f"{os.path.join(run_dir, 'ckpt')}: no checkpoint; "
                          "train this run first (seqlvm train).")
  return config, dataset, model, path


def evaluate(run_dir, split="test", num_particles=None, bound_names=None,
             batch_size=None, seed=0,
             make_dataset_and_model=make_dataset_and_model, progress=True,
             log=None, report=None):
  """Evaluates the latest checkpoint with each bound on a split.

  The ELBO averages `num_particles` independent single-particle bounds (same
  expectation as N = 1, lower variance); IWAE and FIVO use N particles.

  Args:
    report: optional callable given the results before they are saved (so
      a failure to save never loses them).

  Returns:
    results: dict with "split", "step", "checkpoint", "num_sequences",
      "num_timesteps" and, per bound, {"ll_per_t", "ll_per_seq",
      "num_particles"}; also written to RUN_DIR/eval/SPLIT_nN.json.

  Raises:
    DataMismatchError: if the data is not the data the run was trained on.
    WriteError: if the results cannot be saved (after `report`).
  """
  log = log or (lambda message: print(message, file=sys.stderr))
  if split not in data_lib.SPLITS:
    raise ConfigError(f"Unknown split {split!r}; choose one of "
                      f"{', '.join(data_lib.SPLITS)}.")
  if (num_particles is not None and num_particles < 1) or (
      batch_size is not None and batch_size < 1):
    raise ConfigError(f"--num-particles and --batch-size must be >= 1, got "
                      f"{num_particles} and {batch_size}.")
  config, source, model, path = _load_run(run_dir, make_dataset_and_model,
                                          log, "evaluate")
  if not source.num_sequences(split):
    raise data_lib.DataError(f"The {split!r} split is empty.")
  num_particles = config.num_particles if num_particles is None else (
      num_particles)
  batch_size = config.batch_size if batch_size is None else batch_size
  evaluator = _Evaluator(model, config, source.data_size)
  step = rundir.checkpoint_number(path)
  results = {"split": split, "checkpoint": os.path.relpath(path, run_dir),
             "step": step, "num_sequences": source.num_sequences(split),
             "num_timesteps": source.num_timesteps(split),
             "seed": seed, "data": config.data}
  for name in bound_names or bounds.NAMES:
    per_t, per_seq, _ = evaluator(source, split, name, num_particles,
                                  batch_size,
                                  seed=seed, progress=progress,
                                  label=f"{name} on {split}")
    results[name] = {"ll_per_t": per_t, "ll_per_seq": per_seq,
                     "num_particles": num_particles}
  out = os.path.join(run_dir, "eval", f"{split}_n{num_particles}.json")
  if report is not None:
    report(results)
  previous = rundir.read_record(out)
  if previous.get("checkpoint") == results["checkpoint"] and previous.get(
      "seed") == seed:  # Keep the other bounds of the same checkpoint.
    results = {**previous, **results}
  try:
    fileio.write_json(results, out)
  except fileio.WriteError as e:
    raise fileio.WriteError(
        f"{e} The results{' above' if report else ''} were not "
        "saved.") from e
  results["path"] = out
  return results


class SamplingBudgetError(RuntimeError):
  """Sampling would take longer than its time budget."""


def _draw(model, steps, num, seed, progress, max_seconds):
  """model.sample with a progress bar and a time budget.

  After 20 steps and 5 seconds the time per step is known: if all `steps`
  would take longer than `max_seconds`, sampling stops at once and says how
  long it would take (it also stops when the budget is spent).
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  bar = tqdm(total=steps, desc="sample", unit="step", leave=False,
             file=sys.stderr, disable=not progress, mininterval=0.5)
  start = time.time()

  def on_step(t):
    bar.update(1)
    elapsed = time.time() - start
    done = t + 1
    estimate = elapsed / done * steps
    if max_seconds and (elapsed > max_seconds or (
        done >= 20 and elapsed > 5 and estimate > max_seconds)):
      raise SamplingBudgetError(
          f"sampling {steps} steps would take about {estimate / 60:.1f} "
          f"minutes (measured over the first {done}), more than the "
          f"--max-minutes budget of {max_seconds / 60:g}; give fewer "
          "--steps or a larger --max-minutes. Nothing was written.")

  try:
    x, means = model.sample(steps, num, seed=tf.constant([seed, 0]),
                            return_means=True, progress_fn=on_step)
  finally:
    bar.close()
  return (np.transpose(x.numpy(), [1, 0, 2]),  # [B, T, D]
          np.transpose(means.numpy(), [1, 0, 2]))


def _remove_stale(out_dir, written, own_folder):
  """Removes what an earlier `sample` wrote into out_dir that this one did
  not write again (it lists its files in SAMPLES_RECORD; in the run's own
  samples folder, files named like ours count too)."""
  names = {os.path.basename(p) for p in written}
  previous = rundir.read_record(os.path.join(out_dir, SAMPLES_RECORD))
  stale = {n for n in previous.get("files", []) if isinstance(n, str)}
  if own_folder:
    stale |= {n for n in os.listdir(out_dir) if _SAMPLE_FILE.match(n)}
  for name in sorted(stale - names):
    path = os.path.join(out_dir, name)
    if os.path.basename(name) == name and os.path.isfile(path):
      try:
        os.remove(path)
      except OSError as e:
        raise fileio.WriteError(f"{path}: cannot remove this sample of an "
                                f"earlier call ({e.strerror}).") from e


def sample(run_dir, num=4, steps=64, out_dir=None, seed=0, audio=False,
           make_dataset_and_model=make_dataset_and_model, log=None,
           progress=True, max_seconds=600.):
  """Samples sequences from the latest checkpoint's generative model.

  For pianorolls: one MIDI file and one PNG pianoroll per sample, a PNG of
  all of them (the sampled notes in black over the emission probabilities in
  grey, so the picture shows what the model believes too) and, with
  `audio`, one WAV per sample rendered by a simple additive synthesiser.
  For speech: one WAV per sample (frames joined and de-normalised with the
  training statistics) at the set's sample rate, and a PNG of the waveforms
  with their spectrograms. Always samples.npz with the
  raw samples and the emission means, and samples.json listing the files;
  files of an earlier call that this one does not write again are removed.

  Args:
    progress: show a progress bar over the steps. Default value: True.
    max_seconds: the time budget (> 0); sampling that would take longer
      stops early with `SamplingBudgetError`. Default value: 600.

  Returns:
    paths: the files written.

  Raises:
    DataMismatchError: if the data is not the data the run was trained on.
    WriteError: if out_dir cannot be written (checked before sampling).
    SamplingBudgetError: if sampling would take longer than max_seconds.
  """
  log = log or (lambda message: print(message, file=sys.stderr))
  if num < 1 or steps < 1:
    raise ConfigError(f"--num and --steps must be >= 1, got {num}, {steps}.")
  _check_budget(max_seconds)
  config, source, model, path = _load_run(run_dir, make_dataset_and_model,
                                          log, "sample")
  own_folder = out_dir is None
  out_dir = out_dir or os.path.join(run_dir, "samples")
  fileio.check_writable_dir(out_dir, "samples folder")
  x, means = _draw(model, steps, num, seed, progress, max_seconds)
  paths = _write_samples(x, means, out_dir, os.path.basename(path), source,
                         resolve_emission(config, source), audio)
  _remove_stale(out_dir, paths, own_folder)
  record = os.path.join(out_dir, SAMPLES_RECORD)
  fileio.write_json({"files": sorted(os.path.basename(p) for p in paths),
                     "checkpoint": os.path.relpath(path, run_dir),
                     "num": num, "steps": steps, "seed": seed}, record)
  return paths + [record]


def _write_samples(x, means, out_dir, checkpoint_name, source, emission,
                   audio):
  """Writes samples x `[B, T, D]` (and their emission means) as files."""
  from seqlvm.data import midi  # pylint: disable=g-import-not-at-top
  from seqlvm.data import pictures  # pylint: disable=g-import-not-at-top
  from seqlvm.data import synth  # pylint: disable=g-import-not-at-top
  num = len(x)
  paths = []
  if getattr(source, "kind", "") == "speech":
    waveforms = [np.clip(source.to_waveform(frames), -1., 1.)
                 for frames in x]
    for i, waveform in enumerate(waveforms):
      p = os.path.join(out_dir, f"sample_{i:02d}.wav")
      synth.write_wav(waveform, p, source.sample_rate)
      paths.append(p)
    png = os.path.join(out_dir, "samples.png")
    pictures.write_waveform_png(
        waveforms, png, source.sample_rate,
        titles=[f"sample {i} ({checkpoint_name})" for i in range(num)])
    paths.append(png)
  elif emission == "bernoulli":
    for i, roll in enumerate(x):
      p = os.path.join(out_dir, f"sample_{i:02d}.mid")
      midi.write_midi(roll, p)
      paths.append(p)
      png = os.path.join(out_dir, f"sample_{i:02d}.png")
      pictures.write_pianoroll_png(
          [roll], png, titles=[f"sample {i} ({checkpoint_name})"])
      paths.append(png)
      if audio:
        wav = os.path.join(out_dir, f"sample_{i:02d}.wav")
        synth.write_wav(synth.render_roll(roll, sample_rate=_SYNTH_RATE),
                        wav, _SYNTH_RATE)
        paths.append(wav)
    png = os.path.join(out_dir, "samples.png")
    pictures.write_pianoroll_png(
        np.maximum(x, 0.6 * means), png,
        titles=[f"sample {i}: notes (black), their probabilities (grey); "
                f"{checkpoint_name}" for i in range(num)])
    paths.append(png)
  npz = os.path.join(out_dir, "samples.npz")
  with fileio.atomic_write(npz, "wb") as f:
    np.savez(f, x=x, means=means)
  paths.append(npz)
  return paths
