"""Evaluation: bounds over whole splits, and `evaluate` of a run directory.

`Evaluator` is the public entry point for computing a bound over a split of
a data source with a model (the training loop's validation uses it too):

    evaluator = Evaluator(model, config, source.data_size)
    result = evaluator(source, "test", "fivo", num_particles=16, batch_size=4)
    result.per_timestep, result.per_sequence, result.values

`RunEvaluation` loads a run's checkpoint once and evaluates it into records
(`seqlvm.run.records`), reusing the stored ones; `evaluate` is
`seqlvm eval` and `seqlvm.run.compare` builds on it.

Recommended import: `from seqlvm.run import evaluation`.
"""

import collections
import contextlib
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from seqlvm import fileio
from seqlvm import interrupts
from seqlvm import progress as progress_lib
from seqlvm import registry
from seqlvm import shapes
from seqlvm.errors import CheckpointError
from seqlvm.errors import ConfigError
from seqlvm.errors import DataError
from seqlvm.errors import TrainingError
from seqlvm.run import best as best_lib
from seqlvm.run import distribute
from seqlvm.run import factory
from seqlvm.run import records as records_lib
from seqlvm.run import rundir as rundir_lib
from seqlvm.smc import diagnostics as diagnostics_lib

__all__ = ["Evaluator", "SplitBound", "RunEvaluation", "evaluate",
           "load_run", "read_error", "batch_signature", "diagnostics_summary",
           "check_evaluation_arguments"]

SplitBound = collections.namedtuple(
    "SplitBound",
    [
        "per_timestep",  # float: sum of bounds / sum of lengths (nats).
        "per_sequence",  # float: the mean bound (nats).
        "values",  # float64 [n]: each evaluated sequence's bound.
        "indices",  # int [n]: their positions in the split, ascending.
        "lengths",  # int [n]: their lengths.
        "diagnostics",  # dict of float64 [n]: each sequence's particle
                        # filter diagnostics (`seqlvm.smc.diagnostics`).
    ])


def diagnostics_summary(result):
  """A `SplitBound`'s diagnostics as numbers: length-weighted means, the
  minimum ESS over its sequences."""
  weights = np.asarray(result.lengths, np.float64)
  summary = {}
  for name, values in sorted(result.diagnostics.items()):
    if name == "ess_min_fraction":
      summary[name] = float(np.min(values))
    else:
      summary[name] = float(np.sum(values * weights) / max(weights.sum(), 1))
  return summary


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


# Evaluation's default compilation (see `Evaluator`).
EVAL_XLA = False


class Evaluator:
  """Compiled bound evaluation over whole splits, cached per (bound, N).

  XLA compiles once per padded length (the length buckets keep them few);
  a graph without XLA compiles once. One pass over a split is faster as a
  graph (`EVAL_XLA`; on MuseData's test split 10.6 s against 55 s with
  XLA), every later pass with the same function (another seed) faster with
  XLA (2.9 s against 10.4 s): experiments/bench_eval.py. XLA's random
  streams are not TensorFlow's, so the two give other (equally valid)
  estimates for the same seed; the records keep them apart.

  Args:
    model: the model (a model with relaxed latents is evaluated with hard
      ones: `model.for_evaluation()`).
    config: the run's `Config` (FIVO's resampling options, the padding).
    data_size: int D.
    xla: compile with XLA. Default value: None (`EVAL_XLA`).
    strategy: a `tf.distribute` strategy (the model built in its scope), or
      None for one device. Each replica evaluates whole batches of
      `batch_size`: the single-device batch i, with its seed, on replica
      i mod R, so the numbers are one device's (`distribute.eval_input`).
      Every worker of a cluster gets every sequence's result.
  """

  def __init__(self, model, config, data_size, xla=None, strategy=None):
    self._model = model.for_evaluation()
    self._config = config
    self._data_size = data_size
    self.xla = EVAL_XLA if xla is None else bool(xla)
    self.strategy = strategy
    self._fns = {}
    self._rounds = {}

  @property
  def model(self):
    """The model evaluated (the hard twin of a relaxed one)."""
    return self._model

  def batch_fn(self, name, num_particles, batch_size, diagnostics=False):
    """The compiled (x, lengths, seed) -> bound `[B]` of one batch; with
    `diagnostics`, (bound, dict of per-sequence diagnostics `[B]`)."""
    key = (name, num_particles, batch_size, diagnostics)
    if key not in self._fns:
      spec = factory.bound_spec(self._config, name, num_particles,
                                training=False)
      model = self._model

      @tf.function(jit_compile=self.xla,
                   input_signature=batch_signature(self._data_size,
                                                   batch_size))
      def evaluate_batch(x, lengths, seed):
        mask = shapes.sequence_mask(lengths, tf.shape(x)[0])
        if not diagnostics:
          return spec(model, x, mask, seed)
        sweep = spec.sweep(model, x, mask, seed)
        return sweep.log_marginal, diagnostics_lib.per_sequence(
            sweep, mask, num_particles)

      self._fns[key] = evaluate_batch
    return self._fns[key]

  def __call__(self, source, split, name, num_particles, batch_size, seed=0,
               progress=False, label="", max_batches=None):
    """The bound `name` with N particles over `split`: a `SplitBound`.

    Batch i's seed is derived from (seed, i), so the same seed and batch
    size give the same numbers.

    Args:
      max_batches: evaluate only the first this many batches (the same
        sequences for every seed). Default value: None (all).

    Raises:
      DataError: if reading the data fails.
      TrainingError: if the bound is not finite for some sequence.
    """
    # Ctrl-C and SIGTERM wait for the next batch (`seqlvm.interrupts`); in
    # a cluster's training loop, for its next step.
    with interrupts.held():
      return self._evaluate(source, split, name, num_particles, batch_size,
                            seed, progress, label, max_batches)

  def _evaluate(self, source, split, name, num_particles, batch_size, seed,
                progress, label, max_batches):
    fn = self.batch_fn(name, num_particles, batch_size, diagnostics=True)
    bar = progress_lib.Progress(
        source.num_sequences(split), label or name, unit="seq",
        enabled=progress, interval=30, leave=False)
    parts = collections.defaultdict(list)
    if self.strategy is None:
      ds = source.eval_dataset(split, batch_size,
                               pad_to_multiple=self._config.pad_to_multiple)
      if max_batches is not None:
        ds = ds.take(max_batches)
      batches = ((x, lengths, index, fn(x, lengths,
                                        distribute.eval_seed(seed, i)))
                 for i, (x, lengths, index) in enumerate(ds))
    else:
      batches = self._distributed_batches(fn, source, split, batch_size, seed,
                                          max_batches)
    try:
      for unused_x, lengths, index, (bound, diagnostics) in batches:
        interrupts.check()
        index = np.asarray(index)
        real = index >= 0
        parts["values"].append(np.asarray(bound)[real])
        parts["indices"].append(index[real])
        parts["lengths"].append(np.asarray(lengths)[real])
        for key, value in diagnostics.items():
          parts[key].append(np.asarray(value)[real])
        bar.update(int(real.sum()))
    except distribute.COLLECTIVE_ERRORS as e:
      if self.strategy is None or not distribute.task_id(self.strategy):
        raise read_error(source, f"the {split!r} split", e) from e
      raise TrainingError(
          f"Lost contact with another worker while evaluating {split!r} "
          f"(or a collective failed: {type(e).__name__}: "
          f"{(e.message or '').splitlines()[0][:200]}); run the evaluation "
          "again on every worker (records already written are kept).") from e
    except tf.errors.OpError as e:
      raise read_error(source, f"the {split!r} split", e) from e
    finally:
      bar.close()
    if not parts:
      raise DataError(f"The {split!r} split is empty.")
    return _split_bound(parts, name, label or split)

  def _distributed_batches(self, fn, source, split, batch_size, seed,
                           max_batches):
    """(None, lengths, index, (bound, diagnostics)) of every replica's batch
    in rounds of R (gathered to every worker), until a round of fillers."""
    strategy = self.strategy
    inputs = iter(distribute.eval_input(
        strategy, source, split, batch_size, self._config.pad_to_multiple,
        seed, max_batches))
    key = id(fn)
    if key not in self._rounds:
      def replica_fn(number, x, lengths, index, batch_seed):
        return distribute.all_gather(
            (number, lengths, index, fn(x, lengths, batch_seed)))

      @tf.function
      def one_round(iterator):  # Every replica holds the gathered round.
        return tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0],
            strategy.run(replica_fn, args=next(iterator)))

      self._rounds[key] = one_round
    one_round = self._rounds[key]
    while True:
      numbers, lengths, index, results = tf.nest.map_structure(
          lambda t: t.numpy(), one_round(inputs))
      if np.all(numbers < 0):
        return
      yield None, lengths, index, results


def _split_bound(parts, name, label):
  """The `SplitBound` of the batches' parts, in the split's order."""
  indices = np.concatenate(parts["indices"])
  order = np.argsort(indices, kind="stable")
  column = lambda key: np.concatenate(parts[key])[order]
  values = column("values").astype(np.float64)
  if not np.all(np.isfinite(values)):
    bad = int(np.sum(~np.isfinite(values)))
    raise TrainingError(f"The {name} bound is not finite for {bad} "
                        f"sequence(s) of {label}.")
  lengths = column("lengths").astype(np.int64)
  diagnostics = {k: column(k).astype(np.float64)
                 for k in diagnostics_lib.NAMES if k in parts}
  return SplitBound(values.sum() / max(lengths.sum(), 1), values.mean(),
                    values, indices[order], lengths, diagnostics)


def _named_checkpoint(run, name):
  """RUN_DIR/ckpt/ckpt-N (or, failing that, RUN_DIR/best/ckpt-N or
  RUN_DIR/kept/ckpt-N) for "ckpt-N", RUN_DIR/best/ckpt-N for "best-N",
  RUN_DIR/kept/ckpt-N for "kept-N"."""
  found = re.fullmatch(r"(ckpt|best|kept)-(\d+)", name)
  if not found:
    raise ConfigError(f"--checkpoint must be one of "
                      f"{', '.join(registry.CHECKPOINTS)}, ckpt-N, best-N or "
                      f"kept-N, got {name!r}.")
  everywhere = [run.ckpt_dir, run.file(best_lib.BEST_DIR), run.kept_dir]
  folders = {"ckpt": everywhere, "best": [run.file(best_lib.BEST_DIR)],
             "kept": [run.kept_dir]}[found.group(1)]
  for folder in folders:
    prefix = os.path.abspath(os.path.join(folder, "ckpt-" + found.group(2)))
    if os.path.exists(prefix + ".index"):
      return prefix
  there = [os.path.relpath(p, run.path) for folder in everywhere
           for p in rundir_lib.checkpoint_files(folder)]
  raise CheckpointError(f"{run.path}: no checkpoint {name}; there are: "
                        f"{', '.join(there) or 'none'}.")


def _restore_checkpoint(run, model, which, log):
  """Restores the model from the checkpoint `which` asks for; its path and
  a description for the output."""
  checkpoint = tf.train.Checkpoint(model=model)
  best_dir = run.file(best_lib.BEST_DIR)
  has_best = bool(rundir_lib.checkpoint_files(best_dir))
  if which == "auto":
    which = "best" if has_best else "latest"
  if which == "latest":
    manager = run.checkpoint_manager(checkpoint)
    path = rundir_lib.restore_latest(checkpoint, manager, partial=True,
                                     log=log)
    if path is None:
      raise CheckpointError(f"{run.ckpt_dir}: no checkpoint; train this run "
                            "first (seqlvm train).")
    return path, "the latest"
  if which == "best":
    if not has_best:
      raise CheckpointError(
          f"{best_dir}: no best checkpoint; a run keeps one when it "
          "validates (--valid-every > 0). Use --checkpoint latest.")
    manager = tf.train.CheckpointManager(checkpoint, best_dir, max_to_keep=1)
    path = rundir_lib.restore_latest(checkpoint, manager, partial=True,
                                     log=log)
    record = best_lib.read(run.path)
    if record.get("value") is not None and record.get(
        "step") == rundir_lib.checkpoint_number(path):
      return path, (f"the best validation ({record.get('bound')} "
                    f"{record['value']:.4f} nats/step)")
    return path, "the best validation"
  path = _named_checkpoint(run, which)
  try:
    checkpoint.restore(path).expect_partial()
  except (tf.errors.OpError, ValueError, AssertionError) as e:
    raise CheckpointError(f"{path}: cannot be restored "
                          f"({type(e).__name__}: "
                          f"{str(e).splitlines()[0]}).") from e
  return path, "as asked"


def load_run(run_dir, make_dataset_and_model, log, purpose,
             checkpoint="auto"):
  """The run's config, data (checked against its record), model restored
  from the checkpoint asked for, and that checkpoint's path.

  Args:
    checkpoint: "auto" (the best validation's checkpoint when the run has
      one, else the latest), "best", "latest" (the newest that loads), or a
      name "ckpt-N" / "best-N" / "kept-N". Which one is used is logged.

  Raises:
    ConfigError: if there is no readable config, or `checkpoint` is not a
      checkpoint name.
    DataMismatchError: if the data is not the data the run was trained on.
    CheckpointError: if no checkpoint restores, or the one asked for is
      missing.
  """
  from seqlvm.data import registry as data_registry  # pylint: disable=g-import-not-at-top
  from seqlvm.data import sources  # pylint: disable=g-import-not-at-top
  run = rundir_lib.RunDir(run_dir)
  config = run.load_config()
  # Runs store their data as a name or an absolute path; an older run's
  # relative path is taken from here, and its fingerprint decides.
  config = config.replace(data=data_registry.canonical(config.data))
  # Evaluated and sampled in float32 whatever precision the run trained at
  # (its variables are float32): the bounds reported are float32's.
  config = config.replace(precision="float32")
  dataset, model = make_dataset_and_model(config)
  dataset = sources.as_source(dataset)
  if not run.check_data(dataset, config.data, purpose):
    log(f"Warning: {run.file(rundir_lib.DATA_RECORD)} is missing (a run "
        "of an older seqlvm): cannot check that this is the run's data.")
  path, why = _restore_checkpoint(run, model, checkpoint or "auto", log)
  log(f"{run.path}: using {os.path.relpath(path, run.path)} (step "
      f"{rundir_lib.checkpoint_number(path)}, {why}).")
  return config, dataset, model, path


class RunEvaluation:
  """A run loaded once to evaluate many (split, bound, N, seed); stored
  records of the same checkpoint are reused (`seqlvm.run.records`).

  Args:
    run_dir: the run directory.
    checkpoint: which checkpoint (see `load_run`). Default value: "auto".
    make_dataset_and_model: as for `train`.
    log: callable for messages.
    xla: compile with XLA (see `Evaluator`). Default value: None
      (`EVAL_XLA`).
    strategy: a `tf.distribute` strategy, or None (see `Evaluator`). In a
      cluster, every worker reads the run directory and only the chief
      writes records into it; the others write theirs to a temporary
      directory (`close` deletes it).
  """

  def __init__(self, run_dir, checkpoint="auto",
               make_dataset_and_model=factory.make_dataset_and_model,
               log=None, xla=None, strategy=None):
    self.log = log or progress_lib.message
    self.run_dir = os.fspath(run_dir)
    scope = (strategy.scope() if strategy is not None
             else contextlib.nullcontext())
    with scope:
      self.config, self.source, model, path = load_run(
          run_dir, make_dataset_and_model, self.log, "evaluate", checkpoint)
    self.checkpoint = os.path.relpath(path, self.run_dir)
    self.step = rundir_lib.checkpoint_number(path)
    self.digest = records_lib.checkpoint_digest(path)
    distribute.check_same_checkpoint_on_workers(
        strategy, self.step, self.digest, "the checkpoint evaluated")
    self.evaluator = Evaluator(model, self.config, self.source.data_size,
                               xla=xla, strategy=strategy)
    self._agree = distribute.agreement(strategy)
    self._private = None
    self.write_dir = self.run_dir
    if not distribute.is_chief(strategy):
      self._private = tempfile.mkdtemp(prefix="seqlvm-eval-")
      self.write_dir = self._private
    self.write_errors = []
    self._versions = None

  def close(self):
    """Deletes a non-chief worker's temporary records."""
    if self._private:
      shutil.rmtree(self._private, ignore_errors=True)
      self._private = None

  def record(self, split, bound, num_particles, batch_size, seed,
             progress=False, force=False):
    """The record of one evaluation: stored (same checkpoint digest) or
    computed now and written.

    Returns:
      record, reused: the record (dict) and whether it was stored.
    """
    path = records_lib.record_path(self.run_dir, split, self.checkpoint,
                                   bound, num_particles, seed, batch_size,
                                   self.evaluator.xla)
    stored = records_lib.read(path)
    # (Before the XLA records had their own path, some were written at the
    # graph path: the flag must agree too.)
    reuse = bool(stored and not force and self.digest and
                 stored.get("checkpoint_digest") == self.digest and
                 bool(stored.get("xla", False)) == self.evaluator.xla)
    if self._agree is not None:  # Every worker computes, or none does.
      reuse = not self._agree(not reuse)[0]
    if reuse:
      stored["path"] = path
      return stored, True
    result = self.evaluator(self.source, split, bound, num_particles,
                            batch_size, seed=seed, progress=progress,
                            label=f"{bound} N={num_particles} on {split}")
    record = self._record(result, split, bound, num_particles, batch_size,
                          seed)
    try:
      records_lib.write(record, self.write_dir)
    except fileio.WriteError as e:
      self.write_errors.append(e)
    record["path"] = path
    return record, False

  def _record(self, result, split, bound, num_particles, batch_size, seed):
    import datetime  # pylint: disable=g-import-not-at-top
    if self._versions is None:
      self._versions = rundir_lib.versions()
    return {
        "split": split, "checkpoint": self.checkpoint,
        "checkpoint_digest": self.digest, "step": self.step,
        "bound": bound, "num_particles": num_particles, "seed": seed,
        "batch_size": batch_size, "xla": self.evaluator.xla,
        "data": self.config.data, "num_sequences": len(result.values),
        "num_timesteps": int(result.lengths.sum()),
        **records_lib.summarize(result.values, result.lengths),
        **diagnostics_summary(result),
        "values": result.values.tolist(),
        "lengths": result.lengths.tolist(),
        "diagnostics": {k: v.tolist() for k, v in result.diagnostics.items()},
        "versions": self._versions,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
    }

  def summary(self, split, bound_names, num_particles, batch_size, seed=0,
              seeds=1, progress=False, force=False):
    """Every bound at one N over `seeds` seeds (seed, seed + 1, ...): a dict
    with the split's facts and, per bound, `records.combine` of its records
    plus "num_particles", "records" (their paths) and "reused" (how many
    were stored)."""
    results = {"run": self.run_dir, "split": split,
               "checkpoint": self.checkpoint, "step": self.step,
               "num_sequences": self.source.num_sequences(split),
               "num_timesteps": self.source.num_timesteps(split),
               "seeds": list(range(seed, seed + seeds)),
               "batch_size": batch_size, "data": self.config.data}
    for name in bound_names or registry.BOUNDS.names:
      found = [self.record(split, name, num_particles, batch_size, s,
                           progress, force) for s in results["seeds"]]
      recs = [r for r, _ in found]
      results[name] = {**records_lib.combine(recs),
                       "num_particles": num_particles,
                       "records": [r["path"] for r in recs],
                       "reused": sum(reused for _, reused in found)}
    return results


def check_evaluation_arguments(split, num_particles, batch_size, seeds=1):
  """Refuses a split that does not exist and counts below 1."""
  if split not in registry.SPLITS:
    raise ConfigError(f"Unknown split {split!r}; choose one of "
                      f"{', '.join(registry.SPLITS)}.")
  for flag, value in (("--num-particles", num_particles),
                      ("--batch-size", batch_size), ("--seeds", seeds)):
    values = value if isinstance(value, (list, tuple)) else [value]
    if any(v is not None and v < 1 for v in values):
      raise ConfigError(f"{flag} must be >= 1, got {value}.")


def evaluate(run_dir, split="test", num_particles=None, bound_names=None,
             batch_size=None, seed=0, seeds=1, checkpoint="auto",
             force=False,
             make_dataset_and_model=factory.make_dataset_and_model,
             progress=True, log=None, report=None, xla=None, strategy=None):
  """Evaluates a checkpoint of a run with each bound on a split.

  The ELBO averages `num_particles` independent single-particle bounds (same
  expectation as N = 1, lower variance); IWAE and FIVO use N particles.
  Each (checkpoint, split, bound, N, seed, batch size) is one record in
  RUN_DIR/eval (`seqlvm.run.records`), written as soon as it is computed
  and reused by later calls unless `force`.

  Args:
    seeds: evaluate seeds seed, ..., seed + seeds - 1 (independent sweeps)
      and report their mean and spread. Default value: 1.
    checkpoint: which checkpoint (see `load_run`). Default value: "auto"
      (the best validation's, when the run has one).
    force: compute again even where a record exists. Default value: False.
    report: optional callable given the results before a failure to save
      a record is raised (so it never loses them).
    xla: compile with XLA (see `Evaluator`). Default value: None
      (`EVAL_XLA`: a graph without XLA, faster for one pass over a split).
    strategy: a `tf.distribute` strategy: the batches spread over its
      replicas, the same numbers as one device (see `RunEvaluation`).
      Default value: None (one device).

  Returns:
    results: `RunEvaluation.summary`'s dict.

  Raises:
    DataMismatchError: if the data is not the data the run was trained on.
    WriteError: if a record cannot be saved (after `report`).
  """
  log = log or progress_lib.message
  check_evaluation_arguments(split, num_particles, batch_size, seeds)
  session = RunEvaluation(run_dir, checkpoint, make_dataset_and_model, log,
                          xla, strategy)
  try:
    if not session.source.num_sequences(split):
      raise DataError(f"The {split!r} split is empty.")
    config = session.config
    results = session.summary(
        split, bound_names,
        config.num_particles if num_particles is None else num_particles,
        config.batch_size if batch_size is None else batch_size, seed, seeds,
        progress, force)
  finally:
    session.close()
  if report is not None:
    report(results)
  if session.write_errors:
    raise fileio.WriteError(
        f"{session.write_errors[0]} The results{' above' if report else ''} "
        "were not all saved.")
  return results
