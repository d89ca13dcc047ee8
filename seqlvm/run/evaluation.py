"""Evaluation: bounds over whole splits, and `evaluate` of a run directory.

`Evaluator` is the public entry point for computing a bound over a split of
a data source with a model (the training loop's validation uses it too):

    evaluator = Evaluator(model, config, source.data_size)
    result = evaluator(source, "test", "fivo", num_particles=16, batch_size=4)
    result.per_timestep, result.per_sequence, result.values

Recommended import: `from seqlvm.run import evaluation`.
"""

import collections
import os
import re
import sys

import numpy as np
import tensorflow as tf

from seqlvm import fileio
from seqlvm import registry
from seqlvm import shapes
from seqlvm.errors import CheckpointError
from seqlvm.errors import ConfigError
from seqlvm.errors import DataError
from seqlvm.errors import TrainingError
from seqlvm.run import factory
from seqlvm.run import rundir as rundir_lib

__all__ = ["Evaluator", "SplitBound", "evaluate", "load_run", "read_error",
           "batch_signature"]

SplitBound = collections.namedtuple(
    "SplitBound",
    [
        "per_timestep",  # float: sum of bounds / sum of lengths (nats).
        "per_sequence",  # float: the mean bound (nats).
        "values",  # float64 [num_sequences]: each sequence's bound, in the
                   # order of the length-bucketed batches.
    ])


def batch_signature(data_size, batch_size):
  """The input signature (x, lengths, seed) of compiled batch functions.

  A static batch size keeps TFP's resamplers on their static-shape path;
  evaluation pads its last batch with empty sequences to match.
  """
  return [tf.TensorSpec([None, batch_size, data_size], tf.float32),
          tf.TensorSpec([batch_size], tf.int32),
          tf.TensorSpec([2], tf.int32)]


def read_error(source, what, error):
  """A DataError naming the data for a TensorFlow error while reading it."""
  message = getattr(error, "message", "") or str(error)
  found = re.search(r"assertion failed: \[([^\]]*)\]", message)
  if found:  # One of our own checks on the data.
    detail = found.group(1).replace("\\'", "'")
  else:
    lines = message.strip().splitlines()
    detail = f"{type(error).__name__}: {lines[0] if lines else ''}"
  return DataError(
      f"{source.name or 'the data'}: reading {what} failed "
      f"({detail}). Is a file damaged? Prepare the data again (for speech: "
      "seqlvm data from-audio ... --force).")


class Evaluator:
  """Compiled bound evaluation over whole splits, cached per (bound, N).

  Evaluation runs as a TensorFlow graph without XLA: XLA compiles once per
  padded length (seconds each), which a single pass over a split of many
  lengths never earns back (measured in experiments/bench_train.py).

  Args:
    model: the model (a model with relaxed latents is evaluated with hard
      ones: `model.for_evaluation()`).
    config: the run's `Config` (FIVO's resampling options, the padding).
    data_size: int D.
  """

  def __init__(self, model, config, data_size):
    self._model = model.for_evaluation()
    self._config = config
    self._data_size = data_size
    self._fns = {}

  @property
  def model(self):
    """The model evaluated (the hard twin of a relaxed one)."""
    return self._model

  def batch_fn(self, name, num_particles, batch_size):
    """The compiled (x, lengths, seed) -> bound `[B]` of one batch."""
    key = (name, num_particles, batch_size)
    if key not in self._fns:
      spec = factory.bound_spec(self._config, name, num_particles,
                                training=False)
      model = self._model

      @tf.function(jit_compile=False,
                   input_signature=batch_signature(self._data_size,
                                                   batch_size))
      def evaluate_batch(x, lengths, seed):
        mask = shapes.sequence_mask(lengths, tf.shape(x)[0])
        return spec(model, x, mask, seed)

      self._fns[key] = evaluate_batch
    return self._fns[key]

  def __call__(self, source, split, name, num_particles, batch_size, seed=0,
               progress=False, label=""):
    """The bound `name` with N particles over `split`: a `SplitBound`.

    Raises:
      DataError: if reading the data fails.
      TrainingError: if the bound is not finite for some sequence.
    """
    fn = self.batch_fn(name, num_particles, batch_size)
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
      raise read_error(source, f"the {split!r} split", e) from e
    finally:
      if bar is not None:
        bar.close()
    per_sequence = np.concatenate(results).astype(np.float64)
    if not np.all(np.isfinite(per_sequence)):
      bad = int(np.sum(~np.isfinite(per_sequence)))
      raise TrainingError(f"The {name} bound is not finite for {bad} "
                          f"sequence(s) of {label or split}.")
    return SplitBound(per_sequence.sum() / max(total_steps, 1),
                      per_sequence.mean(), per_sequence)


def load_run(run_dir, make_dataset_and_model, log, purpose):
  """The run's config, data (checked against its record), model restored
  from the newest checkpoint that loads, and that checkpoint's path.

  Raises:
    ConfigError: if there is no readable config.
    DataMismatchError: if the data is not the data the run was trained on.
    CheckpointError: if no checkpoint restores.
  """
  from seqlvm.data import registry as data_registry  # pylint: disable=g-import-not-at-top
  from seqlvm.data import sources  # pylint: disable=g-import-not-at-top
  run = rundir_lib.RunDir(run_dir)
  config = run.load_config()
  # Runs store their data as a name or an absolute path; an older run's
  # relative path is taken from here, and its fingerprint decides.
  config = config.replace(data=data_registry.canonical(config.data))
  dataset, model = make_dataset_and_model(config)
  dataset = sources.as_source(dataset)
  if not run.check_data(dataset, config.data, purpose):
    log(f"Warning: {run.file(rundir_lib.DATA_RECORD)} is missing (a run "
        "of an older seqlvm): cannot check that this is the run's data.")
  checkpoint = tf.train.Checkpoint(model=model)
  manager = run.checkpoint_manager(checkpoint)
  path = rundir_lib.restore_latest(checkpoint, manager, partial=True, log=log)
  if path is None:
    raise CheckpointError(f"{run.ckpt_dir}: no checkpoint; train this run "
                          "first (seqlvm train).")
  return config, dataset, model, path


def evaluate(run_dir, split="test", num_particles=None, bound_names=None,
             batch_size=None, seed=0,
             make_dataset_and_model=factory.make_dataset_and_model,
             progress=True, log=None, report=None):
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
  if split not in registry.SPLITS:
    raise ConfigError(f"Unknown split {split!r}; choose one of "
                      f"{', '.join(registry.SPLITS)}.")
  if (num_particles is not None and num_particles < 1) or (
      batch_size is not None and batch_size < 1):
    raise ConfigError(f"--num-particles and --batch-size must be >= 1, got "
                      f"{num_particles} and {batch_size}.")
  config, source, model, path = load_run(run_dir, make_dataset_and_model,
                                         log, "evaluate")
  if not source.num_sequences(split):
    raise DataError(f"The {split!r} split is empty.")
  num_particles = config.num_particles if num_particles is None else (
      num_particles)
  batch_size = config.batch_size if batch_size is None else batch_size
  evaluator = Evaluator(model, config, source.data_size)
  results = {"split": split, "checkpoint": os.path.relpath(path, run_dir),
             "step": rundir_lib.checkpoint_number(path),
             "num_sequences": source.num_sequences(split),
             "num_timesteps": source.num_timesteps(split),
             "seed": seed, "data": config.data}
  for name in bound_names or registry.BOUNDS.names:
    per_t, per_seq, _ = evaluator(source, split, name, num_particles,
                                  batch_size, seed=seed, progress=progress,
                                  label=f"{name} on {split}")
    results[name] = {"ll_per_t": per_t, "ll_per_seq": per_seq,
                     "num_particles": num_particles}
  return _save_results(results, run_dir, split, num_particles, seed, report)


def _save_results(results, run_dir, split, num_particles, seed, report):
  out = os.path.join(run_dir, "eval", f"{split}_n{num_particles}.json")
  if report is not None:
    report(results)
  previous = rundir_lib.read_record(out)
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
