"""The best checkpoint and early stopping, on scripted validation bounds."""

import json
import math

import numpy as np
import tensorflow as tf

from seqlvm.config import Config
from seqlvm.run import best as best_lib
from seqlvm.run import evaluation
from seqlvm.run import training


class _Source:
  """Just enough of a Source for Validation: a non-empty valid split."""
  name = "scripted"

  def num_sequences(self, split):
    return 3


class _ScriptedEvaluator:
  """Returns the next scripted per-timestep bound at each call."""

  def __init__(self, bounds):
    self.bounds = list(bounds)
    self.calls = 0

  def __call__(self, source, split, name, num_particles, batch_size, seed=0,
               max_batches=None, **unused):
    value = self.bounds[self.calls]
    self.calls += 1
    values = np.full([3], value * 10.)
    return evaluation.SplitBound(value, value * 10., values, np.arange(3),
                                 np.full([3], 10), {})


class _Manager:
  directory = "ckpt"

  def save(self, checkpoint_number):
    return f"ckpt/ckpt-{checkpoint_number}"


def _run(tmp_path, bounds, patience, num_steps=20, resumed_step=None,
         start=0, not_before=0):
  """Trains a stand-in step with validation at every step."""
  saved, messages = [], []

  def save(step):
    saved.append(step)
    return f"best/ckpt-{step}"

  best = best_lib.BestCheckpoint(tmp_path, save, "fivo", 4,
                                 resumed_step=resumed_step)
  config = Config(valid_every=1, early_stopping=patience,
                  valid_variance_sweeps=0, valid_samples=0)
  validation = training.Validation(_ScriptedEvaluator(bounds), _Source(),
                                   config, str(tmp_path / "valid"), best=best)
  step = tf.Variable(start, dtype=tf.int64)
  loop = training.TrainingLoop(
      lambda x, lengths, seed: (tf.constant(-1.), tf.constant(1.),
                                tf.constant(True)),
      lambda: (tf.zeros([1, 1, 1]), tf.ones([1], tf.int32)), step, num_steps,
      seed=0, checkpointer=training.Checkpointer(_Manager(), step, None),
      hooks=[training.EarlyStopping(patience, best, not_before), validation],
      log=messages.append, source=None)
  loop.run()
  return int(step), best, saved, messages


def test_early_stopping_stops_at_the_right_validation(tmp_path):
  # Validations of steps 1..: best at 1, 2, 4; steps 5 and 6 do not improve
  # on step 4, so with patience 2 training stops before step 7 (whose
  # -1.0 would have been the best).
  bounds = [-5., -4., -4.5, -3., -3.5, -3.2, -1.0, -0.5]
  stopped_at, best, saved, messages = _run(tmp_path, bounds, patience=2)
  assert stopped_at == 6
  assert saved == [1, 2, 4]
  assert (best.step, best.value, best.stale) == (4, -3., 2)
  assert any("Early stopping at step 6: 2 validations without improvement "
             "since the best, at step 4" in m for m in messages), messages
  record = best_lib.read(tmp_path)
  assert record["step"] == 4 and record["checkpoint"] == "best/ckpt-4"
  assert [s for s, _ in record["validations"]] == [1, 2, 3, 4, 5, 6]
  # Patience 0 never stops.
  stopped_at, _, _, _ = _run(tmp_path / "off", bounds, patience=0,
                             num_steps=8)
  assert stopped_at == 8


def test_early_stopping_waits_for_the_end_of_a_kl_warm_up(tmp_path):
  # The same validations with a warm-up to step 8: the stale ones of steps
  # 5 and 6 do not stop it, and the later best (step 8) is kept.
  bounds = [-5., -4., -4.5, -3., -3.5, -3.2, -1.0, -0.5, -0.7, -0.6, -2.]
  stopped_at, best, saved, messages = _run(tmp_path, bounds, patience=2,
                                           not_before=8)
  assert stopped_at == 10 and saved == [1, 2, 4, 7, 8]
  assert (best.step, best.stale) == (8, 2)
  assert any("Early stopping at step 10" in m for m in messages), messages
  # Stale validations from within the warm-up do not count: with the best
  # at step 2 and none better after, patience 2 stops two validations past
  # step 5, not at step 5 itself (stale 3 by then).
  stopped_at, best, _, _ = _run(tmp_path / "stale", [-5., -4.] + [-4.5] * 9,
                                patience=2, not_before=5)
  assert stopped_at == 7 and best.step == 2


def test_a_nan_validation_is_no_improvement(tmp_path):
  stopped_at, best, saved, _ = _run(
      tmp_path, [-5., math.nan, math.nan, -1.], patience=2)
  assert stopped_at == 3 and saved == [1] and best.stale == 2


def test_resume_keeps_the_best_so_far_and_the_count_since(tmp_path):
  bounds = [-5., -4., -4.5, -3., -3.5, -3.2]
  _run(tmp_path, bounds, patience=0, num_steps=6)
  # Resumed from the checkpoint of step 5: the validation of step 6 is
  # done again, the best (step 4) and one stale validation are kept.
  best = best_lib.BestCheckpoint(tmp_path, None, "fivo", 4, resumed_step=5)
  assert (best.step, best.value, best.stale) == (4, -3., 1)
  assert best.checkpoint == "best/ckpt-4"
  # Resumed from step 3 (a kill before the checkpoint of step 4): the best
  # so far is step 2's, whose checkpoint was replaced since.
  best = best_lib.BestCheckpoint(tmp_path, None, "fivo", 4, resumed_step=3)
  assert (best.step, best.value, best.stale) == (2, -4., 1)
  assert best.checkpoint is None
  # The resumed loop counts on: with patience 2, one more stale validation
  # (step 6: -3.5 < -3) stops it.
  stopped_at, best, saved, _ = _run(tmp_path, [-3.5, -3.6], patience=2,
                                    resumed_step=5, start=5)
  assert stopped_at == 6 and saved == [] and best.step == 4
  # A new run ignores any record.
  assert best_lib.BestCheckpoint(tmp_path, None, "fivo", 4).step is None


def test_a_validation_lost_to_a_kill_is_done_on_resume(tmp_path):
  # Killed after the checkpoint of step 2 but before its validation was
  # recorded: the resumed run validates step 2 before it trains on.
  _run(tmp_path, [-5., -4.], patience=0, num_steps=2)
  record = best_lib.read(tmp_path)
  record["validations"] = record["validations"][:1]
  (tmp_path / best_lib.BEST_RECORD).write_text(json.dumps(record))
  _, best, saved, _ = _run(tmp_path, [-3., -3.5], patience=0, num_steps=3,
                           resumed_step=2, start=2)
  assert [s for s, _ in best.validations] == [1, 2, 3]
  assert dict(best.validations)[2] == -3. and saved == [2]


def test_only_validations_on_the_grid_count_toward_patience(tmp_path):
  best = best_lib.BestCheckpoint(tmp_path, lambda step: f"best/ckpt-{step}",
                                 "fivo", 4, every=2)
  for step, value in ((2, -3.), (4, -4.), (5, -4.), (6, -4.)):
    best.update(step, value)  # 5: the end of a --max-minutes budget
  assert best.stale == 2 and best.has(5)


def test_resume_removes_best_checkpoints_of_validations_done_again(tmp_path):
  best_dir = tmp_path / best_lib.BEST_DIR
  best_dir.mkdir()
  for name in ("ckpt-6.index", "ckpt-6.data-00000-of-00001"):
    (best_dir / name).write_bytes(b"x")
  messages = []
  best_lib.BestCheckpoint(tmp_path, None, "fivo", 4, resumed_step=6,
                          log=messages.append)
  assert len(list(best_dir.iterdir())) == 2 and not messages
  best_lib.BestCheckpoint(tmp_path, None, "fivo", 4, resumed_step=4,
                          log=messages.append)
  assert not list(best_dir.iterdir())
  assert "validated again when training passes that step" in messages[0]


def test_a_failed_variance_sweep_keeps_the_validation(tmp_path):
  class Failing(_ScriptedEvaluator):
    def __call__(self, *args, max_batches=None, **kwargs):
      if max_batches is not None:
        raise training.TrainingError("not finite")
      return super().__call__(*args, **kwargs)

  best = best_lib.BestCheckpoint(tmp_path, lambda step: "b", "fivo", 4)
  config = Config(valid_every=1, valid_variance_sweeps=3, valid_samples=0)
  validation = training.Validation(Failing([-2.]), _Source(), config,
                                   str(tmp_path / "valid"), best=best)
  messages = []

  class Loop:
    step = tf.Variable(1, dtype=tf.int64)
    log = messages.append

  assert validation.validate(Loop) == -2. and best.step == 1
  assert "the variance sweeps failed" in messages[0]
