"""Sampling from a run's generative model, written as files.

`sample(run_dir)` restores a checkpoint (the best validation's when there
is one, else the newest), draws sequences with a
progress bar and a time budget, and hands them to `seqlvm.render.samples`,
which writes them as the data's kind asks (MIDI, PNG, WAV).

Recommended import: `from seqlvm.run import sampling`.
"""

import os
import time

import numpy as np
import tensorflow as tf

from seqlvm import fileio
from seqlvm import progress as progress_lib
from seqlvm.errors import ConfigError
from seqlvm.errors import SamplingBudgetError
from seqlvm.render import samples as samples_lib
from seqlvm.run import evaluation
from seqlvm.run import factory
from seqlvm.run import rundir as rundir_lib
from seqlvm.run import training

__all__ = ["sample", "draw", "SAMPLES_RECORD"]

# Files that `sample` writes (and removes again when a later call writes
# fewer): listed in SAMPLES_RECORD in the output folder.
SAMPLES_RECORD = "samples.json"


def draw(model, steps, num, seed, progress, max_seconds):
  """model.sample with a progress bar and a time budget.

  After 20 steps and 5 seconds the time per step is known: if all `steps`
  would take longer than `max_seconds`, sampling stops at once and says how
  long it would take (it also stops when the budget is spent).

  Returns:
    x, means: float `[B, T, D]` each.

  Raises:
    SamplingBudgetError: if sampling would take longer than max_seconds.
  """
  bar = progress_lib.Progress(steps, "sample", unit="step", enabled=progress,
                             interval=30, leave=False)
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
  previous = rundir_lib.read_record(os.path.join(out_dir, SAMPLES_RECORD))
  stale = {n for n in previous.get("files", []) if isinstance(n, str)}
  if own_folder:
    stale |= {n for n in os.listdir(out_dir)
              if samples_lib.SAMPLE_FILE.match(n)}
  for name in sorted(stale - names):
    path = os.path.join(out_dir, name)
    if os.path.basename(name) == name and os.path.isfile(path):
      try:
        os.remove(path)
      except OSError as e:
        raise fileio.WriteError(f"{path}: cannot remove this sample of an "
                                f"earlier call ({e.strerror}).") from e


def sample(run_dir, num=4, steps=64, out_dir=None, seed=0, audio=False,
           make_dataset_and_model=factory.make_dataset_and_model, log=None,
           progress=True, max_seconds=600., checkpoint="auto"):
  """Samples sequences from a checkpoint's generative model (by default the
  best validation's, when the run has one, else the latest).

  The files are those of `seqlvm.render.samples.write_samples`, plus
  samples.json listing them; files of an earlier call that this one does not
  write again are removed.

  Args:
    progress: show a progress bar over the steps. Default value: True.
    max_seconds: the time budget (> 0); sampling that would take longer
      stops early with `SamplingBudgetError`. Default value: 600.
    checkpoint: "auto", "best", "latest" or "ckpt-N" (see
      `evaluation.load_run`). Default value: "auto".

  Returns:
    paths: the files written.

  Raises:
    DataMismatchError: if the data is not the data the run was trained on.
    WriteError: if out_dir cannot be written (checked before sampling).
    SamplingBudgetError: if sampling would take longer than max_seconds.
  """
  log = log or progress_lib.message
  if num < 1 or steps < 1:
    raise ConfigError(f"--num and --steps must be >= 1, got {num}, {steps}.")
  training.check_budget(max_seconds)
  config, source, model, path = evaluation.load_run(
      run_dir, make_dataset_and_model, log, "sample", checkpoint)
  own_folder = out_dir is None
  out_dir = out_dir or os.path.join(run_dir, "samples")
  fileio.check_writable_dir(out_dir, "samples folder")
  x, means = draw(model, steps, num, seed, progress, max_seconds)
  paths = samples_lib.write_samples(
      x, means, out_dir, os.path.basename(path), source,
      factory.resolve_emission(config, source), audio)
  _remove_stale(out_dir, paths, own_folder)
  record = os.path.join(out_dir, SAMPLES_RECORD)
  fileio.write_json({"files": sorted(os.path.basename(p) for p in paths),
                     "checkpoint": os.path.relpath(path, run_dir),
                     "num": num, "steps": steps, "seed": seed}, record)
  return paths + [record]
