"""Training: one small loop, and hooks for everything around it.

`train(config, run_dir)` sets a run up (the run directory's checks and lock,
the data, the model, the optimizer, the restore of the newest checkpoint)
and hands the steps to `TrainingLoop`. The loop only draws a batch, runs the
compiled step and moves the step counter; what happens around a step is a
`Hook`:

    TimeBudget        stops (with a checkpoint) when --max-minutes is spent
    EarlyStopping     stops when --early-stopping validations in a row have
                      not improved on the best one
    NonFinitePolicy   --on-nonfinite: stop with the last good state saved,
                      or skip the batch (at most 20 in a row)
    ProgressBar       a bar on a terminal, a plain line every
                      --progress-every steps in a log file
    Summaries         TensorBoard scalars every --summary-every steps: the
                      bound, the gradient norm, the learning rate, the
                      particle filter's ESS and resampling rate, the speed
    PeriodicCheckpoint  a checkpoint every --checkpoint-every steps
    KeptCheckpoints   the model of every step divisible by --keep-every,
                      kept in RUN_DIR/kept and never pruned (to evaluate
                      runs at equal updates)
    Validation        the validation bound every --valid-every steps, the
                      best one's model kept in RUN_DIR/best
                      (`seqlvm.run.best`), the variance of log p_hat and
                      sample pictures (or audio) in TensorBoard

A checkpoint is written only when an update was applied since the last one
(`Checkpointer`): batches skipped under --on-nonfinite skip change nothing
worth one. An interrupt (Ctrl-C) saves what was trained since the last
checkpoint.

Recommended import: `from seqlvm.run import training`.
"""

import collections
import contextlib
import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

from seqlvm import fileio
from seqlvm import interrupts
from seqlvm import progress as progress_lib
from seqlvm import shapes
from seqlvm.data import registry as data_registry
from seqlvm.data import sources
from seqlvm.smc import diagnostics as diagnostics_lib
from seqlvm.errors import ConfigError
from seqlvm.errors import DataError
from seqlvm.errors import TrainingError
from seqlvm.run import best as best_lib
from seqlvm.run import distribute
from seqlvm.run import evaluation
from seqlvm.run import factory
from seqlvm.run import records as records_lib
from seqlvm.run import rundir as rundir_lib
from seqlvm.run import warmstart

__all__ = ["train", "TrainResult", "make_train_step", "TrainingLoop",
           "Hook", "StepResult", "Checkpointer", "TimeBudget",
           "EarlyStopping", "NonFinitePolicy", "ProgressBar", "Summaries",
           "PeriodicCheckpoint", "KeptCheckpoints", "Validation",
           "default_hooks"]

# The most consecutive non-finite batches --on-nonfinite skip tolerates.
MAX_CONSECUTIVE_SKIPS = 20
# Validation's variance of log p_hat uses the first this many sequences.
VARIANCE_SEQUENCES = 16
# Steps of each sample drawn for TensorBoard at validation.
SAMPLE_STEPS = 64
# Training sweeps take their weight gradients after the loop over time
# (`seqlvm.smc.smc(batch_weight_gradients=True)`).
BATCH_WEIGHT_GRADIENTS = True


@dataclasses.dataclass
class TrainResult:
  step: int
  checkpoint: str
  train_bound_per_timestep: float
  valid_bound_per_timestep: float = float("nan")
  skipped_steps: int = 0
  trained_steps: int = 0  # steps run by this call (0: nothing to train)
  stopped_early: bool = False  # --early-stopping ended training
  best_step: int = -1  # the best validation's step (-1: none)
  best_valid_bound_per_timestep: float = float("nan")
  best_checkpoint: str = ""  # RUN_DIR/best/ckpt-STEP, relative to RUN_DIR


StepResult = collections.namedtuple(
    "StepResult",
    [
        "step",  # int: the number of this update (the counter after it).
        "bound_per_timestep",  # float tensor: the batch's bound per step.
        "grad_norm",  # float tensor: the global gradient norm.
        "applied",  # bool: whether the update was applied (finite).
        "diagnostics",  # dict of float tensors: the batch's particle filter
                        # diagnostics (`seqlvm.smc.diagnostics.NAMES`).
    ], defaults=[{}])


class Checkpointer:
  """Saves checkpoints of the run, only when something changed.

  Args:
    manager: the run's tf.train.CheckpointManager.
    step: the step variable (the checkpoint's number).
    restored: the checkpoint restored at start, or None.
  """

  def __init__(self, manager, step, restored):
    self._manager = manager
    self._step = step
    self.changed = False
    self.last_applied = int(step) if restored else None
    self.path = restored or ""

  def applied(self, step):
    """Records that the update of `step` was applied."""
    self.changed, self.last_applied = True, step

  def save(self):
    """Saves if an update was applied since the last save (or none was
    ever saved); returns the newest checkpoint's path.

    Raises:
      WriteError: naming ckpt/ and the step; the previous one is kept.
    """
    if self.changed or not self.path:
      try:
        self.path = self._manager.save(checkpoint_number=int(self._step))
      except (tf.errors.OpError, OSError) as e:
        message = getattr(e, "message", "") or str(e)
        raise fileio.WriteError(
            f"{self._manager.directory}: cannot write the checkpoint of step "
            f"{int(self._step)} ({type(e).__name__}: "
            f"{message.splitlines()[0]}); the previous checkpoint is "
            "kept.") from e
      self.changed = False
    return self.path

  def good_state(self):
    """Saves, and says where the last good state is (for messages)."""
    path = self.save()
    if self.last_applied is None:
      return f"no update was applied; the initial state is saved in {path}"
    return (f"the last good state (after the update of step "
            f"{self.last_applied}) is saved in {path}")


class Hook:
  """Something done around the loop's steps; every method is optional."""

  def begin(self, loop):
    """Before the first step."""

  def should_stop(self, loop):
    """Before each step: True ends training (with a checkpoint)."""
    del loop
    return False

  def on_result(self, loop, result):
    """After the compiled step, before the step counter moves."""

  def after_step(self, loop, result):
    """After the step counter moved to `result.step`."""

  def close(self, loop):
    """When the loop ends for any reason (bars closed, writers flushed)."""

  def end(self, loop):
    """After `close`, when the loop ended without an error."""


class TimeBudget(Hook):
  """Stops once `max_seconds` of wall-clock time are spent."""

  def __init__(self, max_seconds):
    self.max_seconds = max_seconds

  def should_stop(self, loop):
    if time.time() - loop.start_time > self.max_seconds:
      loop.log(f"Time budget of {self.max_seconds:.0f} s spent at step "
               f"{int(loop.step)}.")
      return True
    return False


class EarlyStopping(Hook):
  """Stops once `patience` validations in a row have not improved on the
  best one (read from the `BestCheckpoint`, so a resumed run counts on).
  With `not_before` (the end of a KL warm-up, during which the objective is
  not yet the bound that validation measures) only the validations after
  that step count: the run goes on until `patience` validations (one every
  `every` steps) after it, in a row, have not improved on the best."""

  def __init__(self, patience, best, not_before=0, every=1):
    self.patience = patience
    self.best = best
    self.not_before = not_before
    self.every = every
    self.stopped = False

  def should_stop(self, loop):
    if not self.patience or self.best.stale < self.patience:
      return False
    # Of a warm-up's stale validations only those after it count.
    step = int(loop.step)
    if self.not_before and (step // self.every - self.not_before //
                            self.every) < self.patience:
      return False
    if not self.stopped:
      if self.best.step is not None:
        why = (f"{self.best.stale} validations without improvement since "
               f"the best, at step {self.best.step} "
               f"({self.best.value:.4f} nats/step)")
      else:
        why = f"{self.best.stale} validations and none finite"
      loop.log(f"Early stopping at step {int(loop.step)}: {why}; "
               f"--early-stopping {self.patience}.")
      self.stopped = True
    return True


class NonFinitePolicy(Hook):
  """--on-nonfinite: "stop" raises TrainingError with the last good state
  saved; "skip" skips the batch with a warning, at most
  MAX_CONSECUTIVE_SKIPS in a row."""

  def __init__(self, policy, bound_name):
    self.policy = policy
    self.bound_name = bound_name
    self.skipped = 0
    self._consecutive = 0

  def on_result(self, loop, result):
    if result.applied:
      self._consecutive = 0
      return
    message = (f"non-finite {self.bound_name} bound "
               f"({float(result.bound_per_timestep)}) or gradient norm "
               f"({float(result.grad_norm)}) at step {result.step}")
    if self.policy == "stop":
      raise TrainingError(
          f"Training stopped: {message}. The update was not applied; "
          f"{loop.checkpointer.good_state()}. Rerun with --on-nonfinite skip "
          "to skip such batches, or lower the learning rate.")
    self.skipped += 1
    self._consecutive += 1
    loop.log(f"Warning: skipped the batch at step {result.step}: "
             f"{message}.")
    if self._consecutive >= MAX_CONSECUTIVE_SKIPS:
      raise TrainingError(
          f"Training stopped: {MAX_CONSECUTIVE_SKIPS} consecutive non-finite "
          f"batches (steps {result.step - MAX_CONSECUTIVE_SKIPS + 1} to "
          f"{result.step}); {loop.checkpointer.good_state()}.")


class ProgressBar(Hook):
  """Progress over the steps on stderr: a bar on a terminal, elsewhere a
  plain line every `every` steps (`seqlvm.progress.Progress`)."""

  def __init__(self, num_steps, initial, enabled, every=100):
    self.bar = progress_lib.Progress(num_steps, "train", unit="step",
                                     initial=initial, enabled=enabled,
                                     every=every)

  def after_step(self, loop, result):
    self.bar.update(1)

  def close(self, loop):
    self.bar.close()


class Summaries(Hook):
  """TensorBoard scalars of training, every `every` steps: over the applied
  updates since the last summary, the mean bound per timestep, the mean
  ESS fraction, the smallest ESS fraction and the resampling rate
  (smc/...); the last gradient norm, the learning rate of the next update
  and the speed.

  Args:
    directory: RUN_DIR/train.
    bound_name: the tag's prefix.
    every: --summary-every.
    num_steps: the last step (always summarised).
    on_window: optional callable given each window's mean (the bar's
      postfix).
    learning_rate: optional () -> float, the current learning rate.
    kl_weight: optional () -> float, the KL annealing weight of the next
      update (written as "kl_weight").
  """

  def __init__(self, directory, bound_name, every, num_steps,
               on_window=None, learning_rate=None, kl_weight=None):
    self.writer = tf.summary.create_file_writer(directory)
    self.bound_name = bound_name
    self.every = every
    self.num_steps = num_steps
    self.on_window = on_window
    self.learning_rate = learning_rate
    self.kl_weight = kl_weight
    self.window = []
    self.diagnostics = collections.defaultdict(list)
    self.last_window_mean = float("nan")

  def on_result(self, loop, result):
    if result.applied:
      self.window.append(float(result.bound_per_timestep))
      for name, value in result.diagnostics.items():
        self.diagnostics[name].append(float(value))

  def _diagnostic_scalars(self):
    for name, values in sorted(self.diagnostics.items()):
      reduce = np.min if name == "ess_min_fraction" else np.mean
      tf.summary.scalar(f"smc/{name}", reduce(values))
    self.diagnostics.clear()

  def after_step(self, loop, result):
    current = result.step
    if self.window and (current % self.every == 0 or
                        current == self.num_steps):
      self.last_window_mean = float(np.mean(self.window))
      self.window = []
      elapsed = time.time() - loop.start_time
      with self.writer.as_default(step=current):
        tf.summary.scalar(f"{self.bound_name}_per_timestep",
                          self.last_window_mean)
        tf.summary.scalar("grad_norm", result.grad_norm)
        tf.summary.scalar("steps_per_second",
                          (current - loop.start_step) / max(elapsed, 1e-9))
        if self.learning_rate is not None:
          tf.summary.scalar("learning_rate", self.learning_rate())
        if self.kl_weight is not None:
          tf.summary.scalar("kl_weight", self.kl_weight())
        self._diagnostic_scalars()
      if self.on_window:
        self.on_window(self.last_window_mean)

  def close(self, loop):
    self.writer.flush()

  def end(self, loop):
    if self.window:
      self.last_window_mean = float(np.mean(self.window))


class PeriodicCheckpoint(Hook):
  """A checkpoint every `every` steps."""

  def __init__(self, every):
    self.every = every

  def after_step(self, loop, result):
    if result.step % self.every == 0:
      loop.checkpointer.save()


class KeptCheckpoints(Hook):
  """The model of every step divisible by `every`, kept (never pruned).

  A resumed run first removes the kept checkpoints after the step it
  resumes from: it trains those steps again and keeps them again, so that
  RUN_DIR/kept holds only states of the run as it goes on.

  Args:
    every: --keep-every.
    directory: RUN_DIR/kept.
    save: step -> the saved checkpoint's path (writes DIRECTORY/ckpt-STEP).
    log: where the removal is said.
  """

  def __init__(self, every, directory, save, log=print):
    self.every, self.directory = every, directory
    self._save, self._log = save, log

  def begin(self, loop):
    later = rundir_lib.remove_checkpoints_after(self.directory,
                                                loop.start_step)
    if later:
      steps = ", ".join(str(rundir_lib.checkpoint_number(p)) for p in later)
      self._log(f"{self.directory}: removed the kept checkpoint(s) of steps "
                f"{steps}, after the step resumed from ({loop.start_step}); "
                "they are trained and kept again.")

  def after_step(self, loop, result):
    if result.step % self.every == 0:
      self._save(result.step)


class Validation(Hook):
  """The training bound on the validation split every `valid_every` steps
  (0: never), and once more at the end if the last step was not validated.

  Each validation goes to `best` (a `seqlvm.run.best.BestCheckpoint`, which
  keeps the best one's model) and to TensorBoard: the bound per timestep
  and per sequence, the particle filter's diagnostics, the variance of
  log p_hat over `valid_variance_sweeps` independent sweeps of the first
  VARIANCE_SEQUENCES sequences, and `valid_samples` samples of
  SAMPLE_STEPS steps (pianoroll pictures, or audio for speech).

  A NaN or a damaged file in validation is a warning: it must not end the
  run (a NaN counts as a validation without improvement).

  Args:
    evaluator: an `evaluation.Evaluator` of the model.
    source: the data.
    config: the run's `Config`.
    directory: RUN_DIR/valid.
    best: optional `BestCheckpoint`.
    samples: optional step -> None that writes the sample summaries.
  """

  def __init__(self, evaluator, source, config, directory, best=None,
               samples=None):
    self.evaluator = evaluator
    self.source = source
    self.config = config
    self.writer = tf.summary.create_file_writer(directory)
    self.best = best
    self.samples = samples
    self.last = float("nan")
    self._last_step = None

  def _bound(self, seed, max_batches=None):
    config = self.config
    return self.evaluator(self.source, "valid", config.bound,
                          config.num_particles, config.batch_size, seed=seed,
                          max_batches=max_batches)

  def _variance(self, main):
    """The mean over the first sequences of the variance of log p_hat
    across independent sweeps (the main one and sweeps - 1 more)."""
    sweeps = self.config.valid_variance_sweeps
    if sweeps < 2:
      return None
    batches = -(-VARIANCE_SEQUENCES // self.config.batch_size)
    extra = [self._bound(self.config.seed + k, batches)
             for k in range(1, sweeps)]
    by_index = dict(zip(main.indices.tolist(), main.values))
    first = [by_index[i] for i in extra[0].indices.tolist()]
    stack = np.array([first] + [r.values for r in extra])
    return float(np.var(stack, axis=0, ddof=1).mean())

  def validate(self, loop):
    config = self.config
    if not self.source.num_sequences("valid"):
      return float("nan")
    step = int(loop.step)
    result = variance = None
    try:
      result = self._bound(config.seed)
    except (TrainingError, DataError) as e:
      loop.log(f"Warning: step {step}: validation failed: {e}")
    if result is not None:
      try:
        variance = self._variance(result)
      except (TrainingError, DataError) as e:  # The bound itself stands.
        loop.log(f"Warning: step {step}: the variance sweeps failed: {e}")
    per_t = result.per_timestep if result is not None else float("nan")
    note = ""
    if self.best is not None:
      improved = self.best.update(step, per_t)
      note = " (best so far)" if improved else (
          f" (best {self.best.value:.4f} at step {self.best.step})"
          if self.best.step is not None else "")
    if result is None:
      return per_t
    with self.writer.as_default(step=step):
      tf.summary.scalar(f"{config.bound}_per_timestep", per_t)
      tf.summary.scalar(f"{config.bound}_per_sequence", result.per_sequence)
      for name, value in evaluation.diagnostics_summary(result).items():
        tf.summary.scalar(f"smc/{name}", value)
      if variance is not None:
        tf.summary.scalar("smc/log_p_hat_variance", variance)
      if self.samples is not None:
        self.samples(step)
    loop.log(f"step {step}: valid {config.bound} {per_t:.4f} nats/step, "
             f"{result.per_sequence:.2f} nats/sequence{note}")
    return per_t

  def begin(self, loop):
    # A run killed between a checkpoint and the validation of the same
    # step resumes at that step: validate it now, so that no validation is
    # lost from the best record.
    step, every = int(loop.step), self.config.valid_every
    if self.best is None or not every or not step:
      return
    if self.best.has(step):  # Validated before: not again at the end.
      self._last_step = step
    elif step % every == 0:
      self.last, self._last_step = self.validate(loop), step

  def after_step(self, loop, result):
    if self.config.valid_every and result.step % self.config.valid_every == 0:
      self.last, self._last_step = self.validate(loop), result.step

  def close(self, loop):
    self.writer.flush()

  def end(self, loop):
    if self.config.valid_every and self._last_step != int(loop.step):
      self.last = self.validate(loop)


def sample_summaries(model, source, emission, num, seed):
  """step -> writes `num` samples of SAMPLE_STEPS steps to the default
  summary writer: pianoroll pictures (notes over their probabilities) or,
  for speech, audio. A failure to sample is not a training error: it is
  skipped."""
  from seqlvm.render import samples as samples_lib  # pylint: disable=g-import-not-at-top

  def write(step):
    try:
      x, means = model.sample(SAMPLE_STEPS, num,
                              seed=tf.constant([seed, step], tf.int32),
                              return_means=True)
    except (tf.errors.OpError, ValueError):
      return
    media = samples_lib.tensorboard_media(
        np.transpose(x.numpy(), [1, 0, 2]),
        np.transpose(means.numpy(), [1, 0, 2]), source, emission)
    if media is None:
      return
    if media["kind"] == "audio":
      tf.summary.audio("samples", media["data"], media["sample_rate"],
                       max_outputs=num)
    else:
      tf.summary.image("samples", media["data"], max_outputs=num)

  return write


class TrainingLoop:
  """Draws batches, runs the compiled step, moves the counter; hooks do the
  rest.

  Args:
    train_step: (x, lengths, seed) -> (bound per timestep, gradient norm,
      applied[, diagnostics]), see `make_train_step`.
    next_batch: () -> (x, lengths); raises StopIteration or a TensorFlow
      error when the input fails.
    step: the int64 step variable (checkpointed).
    num_steps: train until the counter reaches this.
    seed: the run's seed; the step's seed is [seed, step].
    checkpointer: the run's `Checkpointer`.
    hooks: `Hook`s, called in order.
    log: callable for messages.
    source: the data (named in read errors).
    agree: optional (stop, interrupted) -> (stop, interrupted), the
      workers' agreement (`seqlvm.run.distribute.agreement`): any worker's
      stop stops all, and any worker's Ctrl-C or SIGTERM interrupts all at
      the same step (`seqlvm.interrupts`). Given, a failed step is taken
      for a lost worker.
  """

  def __init__(self, train_step, next_batch, step, num_steps, seed,
               checkpointer, hooks, log, source, agree=None):
    self.train_step = train_step
    self.next_batch = next_batch
    self.step = step
    self.num_steps = num_steps
    self.seed = seed
    self.checkpointer = checkpointer
    self.hooks = list(hooks)
    self.log = log
    self.source = source
    self.agree = agree
    # Set by `run`: when and at which step this call started.
    self.start_time, self.start_step = None, None

  def _batch(self):
    try:
      return self.next_batch()
    except StopIteration as e:  # The training input repeats forever.
      raise TrainingError("The training input ended unexpectedly at step "
                          f"{int(self.step) + 1}.") from e
    except tf.errors.OpError as e:
      raise evaluation.read_error(
          self.source, f"the training data at step {int(self.step) + 1} "
          f"({self.checkpointer.good_state()})", e) from e

  def _collective(self, fn):
    """fn(); with other workers, a failure is a lost worker's."""
    if self.agree is None:
      return fn()
    try:
      return fn()
    except distribute.COLLECTIVE_ERRORS as e:
      last = self.checkpointer.path or "none yet"
      raise TrainingError(
          f"Lost contact with another worker at step {int(self.step) + 1} "
          "(or a collective failed: "
          f"{type(e).__name__}: {(e.message or '').splitlines()[0][:200]}). "
          f"The newest checkpoint is {last}; restart every worker with the "
          "same command to resume from it.") from e

  def run(self):
    """Trains to `num_steps` (or until a hook stops it); saves at the end."""
    # Ctrl-C and SIGTERM wait for the top of a step or an evaluation's next
    # batch, never break into a function TensorFlow calls from C++. In a
    # cluster they wait for the top of a step, where the workers agree.
    with interrupts.held(deferred=self.agree is not None):
      self._run()

  def _run(self):
    self.start_time, self.start_step = time.time(), int(self.step)
    for hook in self.hooks:
      hook.begin(self)
    try:
      while int(self.step) < self.num_steps:
        interrupts.check()
        stop = any(hook.should_stop(self) for hook in self.hooks)
        if self.agree is not None:
          noted = interrupts.noted()
          stop, interrupted = self._collective(
              lambda: self.agree(stop, noted))
          if interrupted:  # Every worker saves at this step.
            interrupts.raise_noted()  # Its own signal, if it got one.
            raise interrupts.PeerInterrupted()
        if stop:
          break
        x, lengths = self._batch()
        seed = tf.constant([self.seed, int(self.step)], tf.int32)
        outputs = self._collective(lambda: self.train_step(x, lengths, seed))
        result = StepResult(int(self.step) + 1, outputs[0], outputs[1],
                            bool(outputs[2]),
                            outputs[3] if len(outputs) > 3 else {})
        if result.applied:
          self.checkpointer.applied(result.step)
        for hook in self.hooks:
          hook.on_result(self, result)
        self.step.assign_add(1)
        for hook in self.hooks:
          hook.after_step(self, result)
      self.checkpointer.save()
    except KeyboardInterrupt as e:
      # No lost work: keep what was trained since the last checkpoint.
      why = (" (another worker was)"
             if isinstance(e, interrupts.PeerInterrupted) else "")
      self.log(f"Interrupted at step {int(self.step)}{why}; saved "
               f"{self.checkpointer.save()}.")
      raise
    finally:
      for hook in self.hooks:
        hook.close(self)
    for hook in self.hooks:
      hook.end(self)


def make_train_step(model, optimizer, config, data_size, mode="xla",
                    batch_weight_gradients=None):
  """The training step: bound, gradient, finiteness check, Adam update.

  Args:
    model: the model.
    optimizer: a built tf_keras optimizer.
    config: the `Config` (bound, particles, clipping, batch size).
    data_size: int D.
    mode: "xla" (one XLA-compiled `tf.function`), "graph" (a `tf.function`
      without XLA) or "eager" (no `tf.function`: the sweep's while loop runs
      step by step in Python; the benchmarks' baseline).
    batch_weight_gradients: take the weight gradients of the sweep's step
      after the loop over time (`seqlvm.smc.smc`). Default value: None
      (`BATCH_WEIGHT_GRADIENTS`).

  Returns:
    train_step: (x `[T, B, D]`, lengths `[B]`, seed `[2]`) ->
      (bound per timestep, gradient norm, applied, diagnostics); the update
      is applied only when the bound and the gradient norm are finite;
      diagnostics is the batch's `seqlvm.smc.diagnostics.batch_summary`.
      Under KL warm-up (`config.kl_warmup_steps`) the "bound" is the
      annealed objective of `factory.kl_weight_schedule`, a bound from the
      end of the warm-up on.
  """
  kl_weight_fn = factory.kl_weight_schedule(config)
  if batch_weight_gradients is None:
    batch_weight_gradients = BATCH_WEIGHT_GRADIENTS
  variables, objective = factory.training_objective(
      model, config, batch_weight_gradients)

  def train_step(x, lengths, seed):
    mask = shapes.sequence_mask(lengths, tf.shape(x)[0])
    kl_weight = (None if kl_weight_fn is None
                 else kl_weight_fn(optimizer.iterations))
    num_steps = tf.maximum(tf.reduce_sum(tf.cast(lengths, tf.float32)), 1.)
    loss, grads, sweep = objective(x, mask, seed, num_steps, kl_weight)
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
    diagnostics = diagnostics_lib.batch_summary(
        diagnostics_lib.per_sequence(sweep, mask, config.num_particles),
        lengths)
    return -loss, grad_norm, applied, diagnostics

  if mode == "eager":
    return train_step
  if mode not in ("xla", "graph"):
    raise ValueError(f"mode must be xla, graph or eager, got {mode!r}.")
  return tf.function(train_step, jit_compile=(mode == "xla"),
                     input_signature=evaluation.batch_signature(
                         data_size, config.batch_size))


def check_budget(max_seconds):
  """Refuses a time budget that is not positive."""
  if not max_seconds > 0:
    raise ConfigError(f"The time budget (--max-minutes) must be positive, "
                      f"got {max_seconds / 60:g} minutes.")


def train(config, run_dir,
          make_dataset_and_model=factory.make_dataset_and_model,
          progress=True, log=None, max_seconds=None, progress_every=100,
          strategy=None):
  """Trains (or resumes) a run.

  Training is the one writer of its run directory: it holds RUN_DIR/lock
  (`seqlvm.run.rundir.RunLock`) from start to end, and a second training of
  the same directory is refused.

  Args:
    config: a `Config`. A `data` path is stored absolute.
    run_dir: the run directory; an existing run there is resumed.
    make_dataset_and_model: config -> (dataset with .train/.valid lists of
      `[T, D]` arrays, or a `Source`; model).
    progress: show progress: a bar when stderr is a terminal, else a plain
      line every `progress_every` steps. Default value: True.
    log: callable for messages. Default value: print to stderr.
    max_seconds: optional wall-clock budget (> 0); training stops (with a
      checkpoint) once it is spent, and can be resumed later.
    progress_every: steps between plain progress lines. Default value: 100.
    strategy: optional tf.distribute strategy
      (`seqlvm.run.distribute.make_strategy`): data-parallel training of
      the global batch `config.batch_size`; in a cluster, workers other
      than the chief train in a private copy of run_dir. Default value:
      None (one device).

  Returns:
    result: a `TrainResult`; `trained_steps` is 0 when the run was already
      at `config.num_steps` (or had stopped early).

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
  log = log or progress_lib.message
  if max_seconds is not None:
    check_budget(max_seconds)
  if strategy is not None:
    distribute.check_batch(config.batch_size, strategy)
    if not distribute.is_chief(strategy):
      with distribute.worker_run_dir(strategy, run_dir) as private:
        log(f"{distribute.task_id(strategy)}: training in the temporary "
            f"copy {private} (the chief writes {run_dir}).")
        return _train_in(config, private, make_dataset_and_model, log,
                         max_seconds, progress, progress_every, strategy)
  return _train_in(config, run_dir, make_dataset_and_model, log, max_seconds,
                   progress, progress_every, strategy)


def _train_in(config, run_dir, make_dataset_and_model, log, max_seconds,
              progress, progress_every, strategy):
  """`train` in the directory this process writes."""
  config = config.replace(data=data_registry.canonical(config.data))
  run = rundir_lib.RunDir(run_dir)
  stored = run.load_config() if run.exists() else None
  config = factory.resolve_schedule(config, stored)
  config = warmstart.resolve(
      config, stored, trained=bool(rundir_lib.checkpoint_files(run.ckpt_dir)),
      log=log)
  run.check_resume(config, data_registry.canonical)
  created = not os.path.exists(run_dir)
  fileio.check_writable_dir(run_dir, "run directory")
  try:
    with rundir_lib.RunLock(run_dir, log=log):
      return _train(config, run, make_dataset_and_model, log,
                    dict(progress=progress, max_seconds=max_seconds,
                         progress_every=progress_every), strategy)
  except BaseException:
    if created and not os.listdir(run_dir):  # Refused before writing.
      os.rmdir(run_dir)
    raise


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
        f"{source.name or config.data}: --batch-size {config.batch_size} is "
        f"larger than the training split ({what}); a batch would repeat "
        f"sequences. Use --batch-size {min(pieces, config.batch_size)} or "
        "less.")


def _restore(run, checkpoint, manager, model, optimizer, step, stored_data,
             resuming, same_pipeline, log):
  """Restores the newest checkpoint that loads (model, optimizer, step and,
  from the same input pipeline, the data iterator); returns its path."""
  if not resuming or same_pipeline:
    restored = rundir_lib.restore_latest(checkpoint, manager, log=log)
  else:
    # Checkpoints of another input pipeline (an older seqlvm, say): its
    # saved state cannot drive this one. Keep the model, the optimizer and
    # the step, and start the data order afresh.
    restored = rundir_lib.restore_latest(
        tf.train.Checkpoint(model=model, optimizer=optimizer, step=step),
        manager, partial=True, log=log)
    if restored:
      log(f"Warning: {restored} holds the state of another input pipeline "
          f"({stored_data.get('pipeline') or 'an older seqlvm'}); model, "
          "optimizer and step restored, the data order starts afresh.")
  if restored:
    log(f"Resuming {run.path} from {restored} at step {int(step)}.")
  return restored


def _saved_iterator(run):
  """Whether the newest checkpoint holds the data iterator's state (one
  saved by a distributed run has none: it resumes by skipping)."""
  found = rundir_lib.checkpoint_files(run.ckpt_dir)
  if not found:
    return True
  latest = found[-1]
  try:
    return any(name.startswith("data_iterator/")
               for name, _ in tf.train.list_variables(latest))
  except (tf.errors.OpError, ValueError):
    return True  # Unreadable: the restore names it.


def _train(config, run, make_dataset_and_model, log, options, strategy=None):
  """`train` inside the run's lock; `options` for `default_hooks`."""
  scope = strategy.scope() if strategy is not None else (
      contextlib.nullcontext())
  with scope:  # The model's and the optimizer's variables are mirrored.
    dataset, model = make_dataset_and_model(config)
    source = sources.as_source(dataset)
    _check_batch_size(source, config)
    resuming = run.exists()
    if config.init_from and not rundir_lib.checkpoint_files(run.ckpt_dir):
      # Before any file is written: a refused warm start leaves no run.
      warmstart.initialise(model, config.init_from, log)
      distribute.check_same_checkpoint_on_workers(
          strategy, rundir_lib.checkpoint_number(config.init_from),
          records_lib.checkpoint_digest(config.init_from),
          "the checkpoint --init-from read")
    stored_data = run.check_data(source, config.data)
    same_pipeline = stored_data.get("pipeline") == rundir_lib.pipeline_id(
        source)
    run.save_config(config)
    optimizer, learning_rate = factory.make_optimizer(
        config, model.trainable_variables)
  step = tf.Variable(0, dtype=tf.int64, name="step")
  train_data = lambda: source.train_dataset(
      config.batch_size, seed=config.seed,
      pad_to_multiple=config.pad_to_multiple, max_length=config.max_length)
  run.adopt_checkpoints(log)
  # One device keeps the data iterator's state in its checkpoints; a
  # distributed run (whose iterator cannot be saved), or a single-device
  # run resumed from one, skips the data stream to the restored step.
  saves_iterator = strategy is None and _saved_iterator(run)
  iterator = iter(train_data()) if saves_iterator else None
  checkpoint = tf.train.Checkpoint(
      model=model, optimizer=optimizer, step=step,
      **({"data_iterator": iterator} if saves_iterator else {}))
  manager = run.checkpoint_manager(checkpoint, config.keep_checkpoints)
  restored = _restore(run, checkpoint, manager, model, optimizer, step,
                      stored_data, resuming, same_pipeline, log)
  distribute.check_same_on_workers(strategy, [int(step)],
                                   "the step restored")
  if int(step) > config.num_steps:
    raise ConfigError(
        f"{restored}: this run is at step {int(step)}, past --num-steps "
        f"{config.num_steps}; give a larger --num-steps to train further "
        "(its checkpoints are kept).")
  if int(step) == config.num_steps:
    log(f"{run.path} is already at step {int(step)} (--num-steps "
        f"{config.num_steps}): nothing to train. Give a larger --num-steps "
        "to train further.")
    return TrainResult(step=int(step), checkpoint=restored or "",
                       train_bound_per_timestep=float("nan"))
  # A run restored from a checkpoint without a record was made by an older
  # seqlvm: its creator is unknown.
  run.record_versions(resuming=restored is not None)
  mode = "xla" if config.jit_compile else "graph"
  if strategy is not None:
    log(f"Distributed: {distribute.describe(strategy)}; global batch "
        f"{config.batch_size}, "
        f"{distribute.check_batch(config.batch_size, strategy)} sequences "
        "per replica.")
    inputs = distribute.train_input(strategy, source, config, int(step))
    train_step = distribute.make_train_step(
        model, optimizer, config, strategy, inputs.element_spec, mode=mode)
    iterator = iter(inputs)
  else:
    if iterator is None:
      iterator = iter(train_data().skip(int(step)))
    train_step = make_train_step(model, optimizer, config, source.data_size,
                                 mode=mode)
  best = best_lib.BestCheckpoint(
      run.path, _best_saver(run, model, step), config.bound,
      config.num_particles, resumed_step=int(step) if restored else None,
      every=config.valid_every, log=log)
  kl_weight_fn = factory.kl_weight_schedule(config)
  kl_weight = None
  if kl_weight_fn is not None:
    kl_weight = lambda: float(kl_weight_fn(optimizer.iterations))
    log(f"KL warm-up: the latent term's weight rises from "
        f"{config.kl_weight_start:g} to 1 over {config.kl_warmup_steps} "
        f"updates (now {kl_weight():.3f}); until then the training bound "
        "shown is that annealed objective, not a bound, and early stopping "
        f"counts only the validations after step {config.kl_warmup_steps}.")
  kept = None
  if config.keep_every:
    kept = KeptCheckpoints(config.keep_every, run.kept_dir,
                           _kept_saver(run, model, step), log)
  hooks = default_hooks(config, run, source, model, int(step), best=best,
                        learning_rate=learning_rate, kl_weight=kl_weight,
                        kept=kept, **options)
  return _run_loop(config, train_step, lambda: next(iterator), step,
                   Checkpointer(manager, step, restored), hooks, log, source,
                   best, agree=distribute.agreement(strategy))


def _kept_saver(run, model, step):
  """step -> writes the model to RUN_DIR/kept/ckpt-STEP (no index: every
  one is kept, and readers find them by their .index file, which
  TensorFlow writes last); the path."""
  checkpoint = tf.train.Checkpoint(model=model, step=step)

  def save(number):
    prefix = os.path.join(run.kept_dir, f"ckpt-{number}")
    try:
      return checkpoint.write(prefix)
    except (tf.errors.OpError, OSError) as e:
      raise fileio.WriteError(
          f"{run.kept_dir}: cannot write the kept checkpoint of step "
          f"{number} ({type(e).__name__}).") from e

  return save


def _best_saver(run, model, step):
  """step -> saves the model to RUN_DIR/best/ckpt-STEP (one kept); the
  path relative to the run."""
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, step=step), run.file(best_lib.BEST_DIR),
      max_to_keep=1)

  def save(number):
    try:
      path = manager.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as e:
      raise fileio.WriteError(
          f"{manager.directory}: cannot write the best checkpoint of step "
          f"{number} ({type(e).__name__}); the previous one is kept.") from e
    return os.path.relpath(path, run.path)

  return save


def default_hooks(config, run, source, model, initial_step, progress=True,
                  max_seconds=None, best=None, learning_rate=None,
                  kl_weight=None, progress_every=100, kept=None):
  """The hooks `train` runs, in their order.

  The order is behaviour: the time budget, early stopping and the
  non-finite policy act first; after a step the progress moves, then the
  summaries, the periodic checkpoint and the validation, in that order.

  Args:
    config: the run's `Config`.
    run: its `RunDir`.
    source: the data (`Source`).
    model: the model (validated through an `Evaluator`).
    initial_step: the step training starts from (the bar's start).
    progress: show progress. Default value: True.
    max_seconds: optional time budget. Default value: None.
    best: optional `BestCheckpoint` (validation keeps the best model; early
      stopping reads it). Default value: None.
    learning_rate: optional () -> float for the summaries.
    kl_weight: optional () -> float, the KL warm-up's weight, for the
      summaries.
    progress_every: steps between plain progress lines. Default value: 100.
    kept: optional `KeptCheckpoints` (--keep-every), after the periodic
      checkpoint.

  Returns:
    hooks: a list of `Hook`s.
  """
  evaluator = evaluation.Evaluator(model, config, source.data_size)
  bar = ProgressBar(config.num_steps, initial_step, progress, progress_every)
  summaries = Summaries(
      run.file("train"), config.bound, config.summary_every,
      config.num_steps, on_window=lambda mean: bar.bar.set_postfix(
          {f"{config.bound}/step": f"{mean:.3f}"}),
      learning_rate=learning_rate, kl_weight=kl_weight)
  samples = None
  if config.valid_samples:
    samples = sample_summaries(evaluator.model, source,
                               factory.resolve_emission(config, source),
                               config.valid_samples, config.seed)
  hooks = [TimeBudget(max_seconds)] if max_seconds is not None else []
  if best is not None and config.early_stopping:
    warm_up = config.kl_warmup_steps if factory.kl_weight_schedule(
        config) else 0
    hooks.append(EarlyStopping(config.early_stopping, best,
                               not_before=warm_up,
                               every=config.valid_every or 1))
  return hooks + [
      NonFinitePolicy(config.on_nonfinite, config.bound), bar, summaries,
      PeriodicCheckpoint(config.checkpoint_every)] + (
          [kept] if kept is not None else []) + [
      Validation(evaluator, source, config, run.file("valid"), best=best,
                 samples=samples)]


def _run_loop(config, train_step, next_batch, step, checkpointer, hooks, log,
              source, best, agree=None):
  """Runs the loop with `hooks`; the `TrainResult`."""
  by_type = {type(h): h for h in hooks}
  summaries, validation = by_type[Summaries], by_type[Validation]
  nonfinite = by_type[NonFinitePolicy]
  stopping = by_type.get(EarlyStopping)
  loop = TrainingLoop(train_step, next_batch, step, config.num_steps,
                      config.seed, checkpointer, hooks, log, source,
                      agree=agree)
  loop.run()
  return TrainResult(step=int(step), checkpoint=checkpointer.path,
                     train_bound_per_timestep=summaries.last_window_mean,
                     valid_bound_per_timestep=validation.last,
                     skipped_steps=nonfinite.skipped,
                     trained_steps=int(step) - loop.start_step,
                     stopped_early=bool(stopping and stopping.stopped),
                     best_step=best.step if best.step is not None else -1,
                     best_valid_bound_per_timestep=best.value
                     if best.step is not None else float("nan"),
                     best_checkpoint=best.checkpoint or "")
