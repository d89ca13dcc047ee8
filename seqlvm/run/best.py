"""The best validation so far: its model in RUN_DIR/best, its history in
RUN_DIR/best.json.

Every validation of a training run is appended to the history (step, the
training bound per timestep on the validation split). When one improves on
the best so far, the model is saved to RUN_DIR/best/ckpt-STEP (one kept)
before the record is rewritten, both atomically; `eval`, `sample` and
`compare` use that checkpoint by default. A resumed run reads the history
back up to the step it resumes from (validations after it will be done
again), so the best value and the count of validations since it, which
early stopping reads, continue where they were. A best checkpoint saved
after that step (by a validation the resumed run does again) is removed, so
that RUN_DIR/best and best.json never disagree. Only validations on the
--valid-every grid count toward early stopping: the extra one at the end of
a --max-minutes budget does not, so a run trained in pieces stops where it
would have in one go.

Recommended import: `from seqlvm.run import best`.
"""

import math
import os

from seqlvm import fileio
from seqlvm.run import rundir as rundir_lib

__all__ = ["BEST_DIR", "BEST_RECORD", "BestCheckpoint", "read"]

BEST_DIR = "best"
BEST_RECORD = "best.json"


def read(run_dir):
  """RUN_DIR/best.json as a dict ({} when there is none)."""
  return rundir_lib.read_record(os.path.join(os.fspath(run_dir), BEST_RECORD))


class BestCheckpoint:
  """Keeps the best validation's model and the validation history.

  Args:
    run_dir: the run directory.
    save: step -> the saved checkpoint's path relative to run_dir (writes
      RUN_DIR/best/ckpt-STEP).
    bound: the validated bound's name (recorded).
    num_particles: its N (recorded).
    resumed_step: the step training resumes from; validations recorded
      after it are dropped. None: a new run (any record is ignored).
    every: --valid-every: only validations of steps divisible by it count
      toward `stale`. Default value: None (all count).
    log: callable for messages. Default value: None (silent).
  """

  def __init__(self, run_dir, save, bound, num_particles, resumed_step=None,
               every=None, log=None):
    self.path = os.path.join(os.fspath(run_dir), BEST_RECORD)
    self._save = save
    self.every = every
    self.bound = bound
    self.num_particles = num_particles
    record = read(run_dir) if resumed_step is not None else {}
    self.validations = [
        [int(s), float(v)] for s, v in record.get("validations", [])
        if int(s) <= resumed_step]
    self.step, self.value = None, -math.inf
    for s, v in self.validations:
      if math.isfinite(v) and v > self.value:
        self.step, self.value = s, v
    self.checkpoint = record.get("checkpoint") if (
        self.step is not None and self.step == record.get("step")) else None
    if resumed_step is not None:
      self._remove_later(run_dir, resumed_step, log)

  def _remove_later(self, run_dir, resumed_step, log):
    """Removes best checkpoints of validations after `resumed_step`."""
    for prefix in rundir_lib.remove_checkpoints_after(
        os.path.join(os.fspath(run_dir), BEST_DIR), resumed_step):
      if log:
        log(f"Removed {prefix}: its validation came after the checkpoint "
            f"this run resumes from (step {resumed_step}); it is validated "
            "again when training passes that step.")

  @property
  def stale(self):
    """Validations since the best one (all of them when none is finite)."""
    counted = [s for s, _ in self.validations
               if not self.every or s % self.every == 0]
    if self.step is None:
      return len(counted)
    return sum(1 for s in counted if s > self.step)

  def has(self, step):
    """Whether the validation of `step` is recorded."""
    return any(s == step for s, _ in self.validations)

  def update(self, step, value):
    """Records the validation of `step`; saves the model if it is the best.

    Returns:
      improved: whether it is the new best (a NaN never is).

    Raises:
      WriteError: if the checkpoint or the record cannot be written.
    """
    self.validations = [[s, v] for s, v in self.validations if s != step]
    self.validations.append([int(step), float(value)])
    improved = math.isfinite(value) and value > self.value
    if improved:
      self.checkpoint = self._save(int(step))
      self.step, self.value = int(step), float(value)
    self._write()
    return improved

  def _write(self):
    fileio.write_json({
        "bound": self.bound, "num_particles": self.num_particles,
        "step": self.step,
        "value": self.value if self.step is not None else None,
        "checkpoint": self.checkpoint, "stale_validations": self.stale,
        "validations": self.validations}, self.path)
