"""Train, evaluate and sample, each from a run directory.

A run directory holds everything a run needs afterwards:

    RUN_DIR/config.json          the Config (so eval and sample need nothing else)
    RUN_DIR/data.json            the data's fingerprint (a resumed run checks it)
    RUN_DIR/ckpt/                tf.train.CheckpointManager checkpoints
    RUN_DIR/train/, RUN_DIR/valid/   TensorBoard summaries
    RUN_DIR/eval/SPLIT_nN.json   results of `evaluate`
    RUN_DIR/samples/             output of `sample` (by default)

Checkpoints hold the model, the optimizer, the step and the input iterator,
so a resumed run continues exactly where it stopped. TensorFlow writes each
checkpoint to temporary files and only then updates the index atomically, so
a run killed while saving keeps its previous checkpoint; a checkpoint that
fails to restore is reported by name and the next older one is used.

The runners take an injectable `make_dataset_and_model(config)` (as FIVO's
`create_dataset_and_model_fn`) so tests and other datasets can plug in.
"""

import dataclasses
import glob
import json
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
from seqlvm import shapes
from seqlvm.config import ConfigError
from seqlvm.config import RESUMABLE_FIELDS
from seqlvm.config import load_config
from seqlvm.config import save_config

__all__ = [
    "train", "evaluate", "sample", "make_dataset_and_model",
    "TrainingError", "CheckpointError", "TrainResult",
]

CONFIG_NAME = "config.json"
DATA_RECORD = "data.json"
_SYNTH_RATE = 22050


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


def _pipeline_id(source):
  return getattr(source, "pipeline_id", type(source).__name__)


def _check_data(source, config, run_dir, log):
  """Records the data's fingerprint and input pipeline in RUN_DIR/data.json;
  on resume, refuses data that changed since.

  Returns:
    stored: the record found before (empty for a new run or an older one).
  """
  path = os.path.join(run_dir, DATA_RECORD)
  stored = _read_previous(path)
  fingerprint = getattr(source, "fingerprint", None)
  current = {"data": config.data, "source": getattr(source, "name", ""),
             "pipeline": _pipeline_id(source),
             "fingerprint": fingerprint() if fingerprint else None}
  if stored.get("fingerprint") and current["fingerprint"] and (
      stored["fingerprint"] != current["fingerprint"]):
    trained_on = stored.get("source") or stored.get("data")
    raise ConfigError(
        f"{path}: this run was trained on {trained_on!r} with fingerprint "
        f"{stored['fingerprint'][:16]}...; "
        f"{current['source'] or config.data!r} now has fingerprint "
        f"{current['fingerprint'][:16]}.... The data changed; train a new "
        "run (another --run-dir) on it.")
  if stored != current:
    fileio.write_json(current, path)
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


def _checkpoint_number(prefix):
  try:
    return int(prefix.rsplit("-", 1)[1])
  except (IndexError, ValueError):
    return -1


def _restore_latest(checkpoint, manager, partial=False, log=None):
  """Restores the newest checkpoint that loads; returns its path or None.

  The candidates are the checkpoints the index names, newest first, then any
  other ckpt-N files in the directory, newest first (the index may be lost or
  damaged: TensorFlow then reports no checkpoints).
  """
  listed = [os.path.abspath(p) for p in reversed(manager.checkpoints)]
  found = [os.path.abspath(f[:-len(".index")]) for f in
           glob.glob(os.path.join(manager.directory, "ckpt-*.index"))]
  others = sorted((f for f in found if f not in listed),
                  key=_checkpoint_number, reverse=True)
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

  Args:
    config: a `Config`.
    run_dir: the run directory; an existing run there is resumed.
    make_dataset_and_model: config -> (dataset with .train/.valid lists of
      `[T, D]` arrays, model).
    progress: show a progress bar. Default value: True.
    log: callable for messages. Default value: print to stderr.
    max_seconds: optional wall-clock budget; training stops (with a
      checkpoint) once it is spent, and can be resumed later.

  Returns:
    result: a `TrainResult`.

  Raises:
    ConfigError: if run_dir holds a run with another configuration.
    CheckpointError: if checkpoints exist but none restores.
    TrainingError: on a non-finite bound or gradient (with
      on_nonfinite="stop"), naming the step; the last good state is saved.
  """
  import tf_keras  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  if log is None:
    log = lambda message: tqdm.write(message, file=sys.stderr)
  _check_resume(config, run_dir)
  dataset, model = make_dataset_and_model(config)
  source = data_lib.as_source(dataset)
  data_size = source.data_size
  os.makedirs(run_dir, exist_ok=True)
  resuming = os.path.exists(os.path.join(run_dir, CONFIG_NAME))
  stored_data = _check_data(source, config, run_dir, log)
  same_pipeline = stored_data.get("pipeline") == _pipeline_id(source)
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

  train_step = make_train_step(model, optimizer, config, data_size,
                               mode="xla" if config.jit_compile else "graph")

  evaluator = _Evaluator(model, config, data_size)
  writer = tf.summary.create_file_writer(os.path.join(run_dir, "train"))
  valid_writer = tf.summary.create_file_writer(os.path.join(run_dir, "valid"))

  def save():
    path = manager.save(checkpoint_number=int(step))
    return path

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

  bar = tqdm(total=config.num_steps, initial=int(step), desc="train",
             disable=not progress, file=sys.stderr, dynamic_ncols=True)
  window, skipped, consecutive_skips = [], 0, 0
  last_window_mean = float("nan")
  last_checkpoint = manager.latest_checkpoint or ""
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
        last_checkpoint = save()
        raise _read_error(source, f"the training data at step "
                          f"{int(step) + 1} (the last good state is saved "
                          f"in {last_checkpoint})", e) from e
      seed = tf.constant([config.seed, int(step)], tf.int32)
      bound_per_t, grad_norm, applied = train_step(x, lengths, seed)
      if bool(applied):
        consecutive_skips = 0
        window.append(float(bound_per_t))
      else:
        message = (f"non-finite {config.bound} bound ({float(bound_per_t)}) "
                   f"or gradient norm ({float(grad_norm)}) at step "
                   f"{int(step) + 1}")
        if config.on_nonfinite == "stop":
          last_checkpoint = save()
          raise TrainingError(
              f"Training stopped: {message}. The update was not applied; "
              f"the last good state is saved in {last_checkpoint}. Rerun "
              "with --on-nonfinite skip to skip such batches, or lower the "
              "learning rate.")
        skipped += 1
        consecutive_skips += 1
        log(f"Warning: skipped the batch at step {int(step) + 1}: {message}.")
        if consecutive_skips >= 20:
          last_checkpoint = save()
          raise TrainingError(
              f"Training stopped: 20 consecutive non-finite batches up to "
              f"step {int(step) + 1}; last good state in {last_checkpoint}.")
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
        last_checkpoint = save()
      if config.valid_every and current % config.valid_every == 0:
        valid_per_t, last_valid_step = validate(), current
    if not (manager.latest_checkpoint or "").endswith(f"-{int(step)}"):
      last_checkpoint = save()
  except KeyboardInterrupt:
    # No lost work: keep what was trained since the last checkpoint.
    last_checkpoint = save()
    log(f"Interrupted at step {int(step)}; saved {last_checkpoint}.")
    raise
  finally:
    bar.close()
    writer.flush()
    valid_writer.flush()
  if config.valid_every and last_valid_step != int(step):
    valid_per_t = validate()
  if window:
    last_window_mean = float(np.mean(window))
  return TrainResult(step=int(step), checkpoint=last_checkpoint,
                     train_bound_per_timestep=last_window_mean,
                     valid_bound_per_timestep=valid_per_t,
                     skipped_steps=skipped)


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


def _load_run(run_dir, make_dataset_and_model, log):
  config = load_config(os.path.join(run_dir, CONFIG_NAME))
  dataset, model = make_dataset_and_model(config)
  dataset = data_lib.as_source(dataset)
  checkpoint = tf.train.Checkpoint(model=model)
  manager = _checkpoint_manager(checkpoint, run_dir)
  path = _restore_latest(checkpoint, manager, partial=True, log=log)
  if path is None:
    raise CheckpointError(f"{os.path.join(run_dir, 'ckpt')}: no checkpoint; "
                          "train this run first (seqlvm train).")
  return config, dataset, model, path


def _read_previous(path):
  try:
    with open(path) as f:
      values = json.load(f)
    return values if isinstance(values, dict) else {}
  except (OSError, ValueError):
    return {}


def evaluate(run_dir, split="test", num_particles=None, bound_names=None,
             batch_size=None, seed=0,
             make_dataset_and_model=make_dataset_and_model, progress=True,
             log=None):
  """Evaluates the latest checkpoint with each bound on a split.

  The ELBO averages `num_particles` independent single-particle bounds (same
  expectation as N = 1, lower variance); IWAE and FIVO use N particles.

  Returns:
    results: dict with "split", "step", "checkpoint", "num_sequences",
      "num_timesteps" and, per bound, {"ll_per_t", "ll_per_seq",
      "num_particles"}; also written to RUN_DIR/eval/SPLIT_nN.json.
  """
  log = log or (lambda message: print(message, file=sys.stderr))
  config, source, model, path = _load_run(run_dir, make_dataset_and_model,
                                          log)
  if split not in data_lib.SPLITS:
    raise ConfigError(f"Unknown split {split!r}; choose one of "
                      f"{', '.join(data_lib.SPLITS)}.")
  if not source.num_sequences(split):
    raise data_lib.DataError(f"The {split!r} split is empty.")
  num_particles = config.num_particles if num_particles is None else (
      num_particles)
  batch_size = config.batch_size if batch_size is None else batch_size
  if num_particles < 1 or batch_size < 1:
    raise ConfigError(f"--num-particles and --batch-size must be >= 1, got "
                      f"{num_particles} and {batch_size}.")
  evaluator = _Evaluator(model, config, source.data_size)
  step = _checkpoint_number(path)
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
  previous = _read_previous(out)
  if previous.get("checkpoint") == results["checkpoint"] and previous.get(
      "seed") == seed:  # Keep the other bounds of the same checkpoint.
    results = {**previous, **results}
  fileio.write_json(results, out)
  results["path"] = out
  return results


def sample(run_dir, num=4, steps=64, out_dir=None, seed=0, audio=False,
           make_dataset_and_model=make_dataset_and_model, log=None):
  """Samples sequences from the latest checkpoint's generative model.

  For pianorolls: one MIDI file and one PNG pianoroll per sample, a PNG of
  all of them (the sampled notes in black over the emission probabilities in
  grey, so the picture shows what the model believes too) and, with
  `audio`, one WAV per sample rendered by a simple additive synthesiser.
  For speech: one WAV per sample (frames joined and de-normalised with the
  training statistics) at the set's sample rate, and a PNG of the waveforms
  with their spectrograms. Always samples.npz with the
  raw samples and the emission means.

  Returns:
    paths: the files written.
  """
  from seqlvm.data import midi  # pylint: disable=g-import-not-at-top
  from seqlvm.data import pictures  # pylint: disable=g-import-not-at-top
  from seqlvm.data import synth  # pylint: disable=g-import-not-at-top
  log = log or (lambda message: print(message, file=sys.stderr))
  if num < 1 or steps < 1:
    raise ConfigError(f"--num and --steps must be >= 1, got {num}, {steps}.")
  config, source, model, path = _load_run(run_dir, make_dataset_and_model,
                                          log)
  out_dir = out_dir or os.path.join(run_dir, "samples")
  x, means = model.sample(steps, num, seed=tf.constant([seed, 0]),
                          return_means=True)
  x = np.transpose(x.numpy(), [1, 0, 2])  # [B, T, D]
  means = np.transpose(means.numpy(), [1, 0, 2])
  paths = []
  checkpoint_name = os.path.basename(path)
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
  elif resolve_emission(config, source) == "bernoulli":
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
