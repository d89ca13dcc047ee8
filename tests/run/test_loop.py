"""The training loop and its hooks, with a stand-in compiled step."""

import math
import os
import signal

import pytest
import tensorflow as tf

from seqlvm import interrupts
from seqlvm.errors import TrainingError
from seqlvm.run import best as best_lib
from seqlvm.run import training


class _Recorder(training.Hook):
  """Records the calls the loop makes, in order."""

  def __init__(self):
    self.calls = []

  def begin(self, loop):
    self.calls.append(("begin", int(loop.step)))

  def on_result(self, loop, result):
    self.calls.append(("result", int(loop.step), result.step))

  def after_step(self, loop, result):
    self.calls.append(("after", int(loop.step)))

  def close(self, loop):
    self.calls.append(("close", int(loop.step)))

  def end(self, loop):
    self.calls.append(("end", int(loop.step)))


class _Manager:
  """A CheckpointManager stand-in that remembers the steps it saved."""
  directory = "ckpt"

  def __init__(self):
    self.saved = []

  def save(self, checkpoint_number):
    self.saved.append(checkpoint_number)
    return f"ckpt/ckpt-{checkpoint_number}"


def _loop(bounds, hooks, num_steps=4, start=0):
  """A loop whose step k returns bounds[k] (NaN: not applied)."""
  step = tf.Variable(start, dtype=tf.int64)
  manager = _Manager()

  def train_step(x, lengths, seed):
    del x, lengths
    value = bounds[int(seed[1])]
    return (tf.constant(value), tf.constant(1.),
            tf.constant(math.isfinite(value)))

  loop = training.TrainingLoop(
      train_step, lambda: (tf.zeros([1, 1, 1]), tf.ones([1], tf.int32)),
      step, num_steps, seed=0,
      checkpointer=training.Checkpointer(manager, step, None), hooks=hooks,
      log=lambda message: None, source=None)
  return loop, manager


def test_hooks_see_each_step_before_and_after_the_counter_moves():
  recorder = _Recorder()
  loop, manager = _loop([-1., -2., -3.], [recorder], num_steps=3)
  loop.run()
  assert recorder.calls == [
      ("begin", 0), ("result", 0, 1), ("after", 1), ("result", 1, 2),
      ("after", 2), ("result", 2, 3), ("after", 3), ("close", 3),
      ("end", 3)]
  assert manager.saved == [3]  # the final checkpoint


def test_periodic_checkpoints_only_after_applied_updates():
  nan = float("nan")
  policy = training.NonFinitePolicy("skip", "fivo")
  loop, manager = _loop([-1., nan, nan, -2.], [
      policy, training.PeriodicCheckpoint(1)], num_steps=4)
  loop.run()
  # Steps 2 and 3 applied nothing: no checkpoint of theirs.
  assert manager.saved == [1, 4] and policy.skipped == 2
  assert loop.checkpointer.last_applied == 4


def test_stop_policy_names_the_step_and_saves_the_last_good_state():
  recorder = _Recorder()
  loop, manager = _loop([-1., float("nan")],
                        [training.NonFinitePolicy("stop", "fivo"), recorder],
                        num_steps=4)
  with pytest.raises(TrainingError, match="at step 2.*update of step 1"):
    loop.run()
  assert manager.saved == [1]
  assert recorder.calls[-1] == ("close", 1)  # closed, not ended


def test_time_budget_stops_before_a_step():
  loop, manager = _loop([-1.] * 4, [training.TimeBudget(-1.)], num_steps=4)
  loop.run()
  assert int(loop.step) == 0 and manager.saved == [0]


def test_an_interrupt_saves_what_was_trained_and_is_raised_again():
  messages = []
  loop, manager = _loop([-1., -2., -3.], [], num_steps=3)

  def interrupted(x, lengths, seed):
    if int(seed[1]) == 2:
      raise KeyboardInterrupt
    return tf.constant(-1.), tf.constant(1.), tf.constant(True)

  loop.train_step, loop.log = interrupted, messages.append
  with pytest.raises(KeyboardInterrupt):
    loop.run()
  assert manager.saved == [2]
  assert messages == ["Interrupted at step 2; saved ckpt/ckpt-2."]


def test_train_runs_its_hooks_in_the_order_that_is_its_behaviour(tmp_path):
  from seqlvm.config import Config  # pylint: disable=g-import-not-at-top
  from seqlvm.data import sources  # pylint: disable=g-import-not-at-top
  from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
  from seqlvm.run import rundir  # pylint: disable=g-import-not-at-top
  config = Config(hidden_size=4, latent_size=2)
  source = sources.InMemorySource({"train": [tf.ones([3, 5]).numpy()]})
  model = factory.build_model(config, 5, source.train_mean)
  best = best_lib.BestCheckpoint(tmp_path, lambda step: "", "fivo", 4)
  hooks = training.default_hooks(config.replace(early_stopping=2),
                                 rundir.RunDir(tmp_path), source, model, 0,
                                 progress=False, max_seconds=60, best=best)
  assert [type(h) for h in hooks] == [
      training.TimeBudget, training.EarlyStopping, training.NonFinitePolicy,
      training.ProgressBar, training.Summaries, training.PeriodicCheckpoint,
      training.Validation]
  assert hooks[-1].best is best
  assert training.TimeBudget not in [type(h) for h in training.default_hooks(
      config, rundir.RunDir(tmp_path), source, model, 0, progress=False)]


def _through_cpp(fn):
  """fn() as a function TensorFlow calls from C++ runs it: an exception
  raised inside comes back as a RuntimeError (pybind11's
  error_already_set), the interrupt it was lost."""
  try:
    return fn()
  except BaseException as e:  # pylint: disable=broad-except
    raise RuntimeError(f"pybind11::error_already_set: {e!r}") from None


class _ValidationSignalled(training.Hook):
  """At step 2 a validation that gets SIGTERM while TensorFlow traces a
  tf.data map function (how a real one was lost)."""

  def __init__(self, batch_check=False):
    self.validated = []
    self.batch_check = batch_check  # Check as the Evaluator does.

  def after_step(self, loop, result):
    if result.step != 2:
      return

    def traced(x):
      os.kill(os.getpid(), signal.SIGTERM)
      for _ in range(1000):  # Where the handler runs.
        pass
      return x + 1

    with interrupts.held():
      values = _through_cpp(lambda: list(
          tf.data.Dataset.range(3).map(traced).as_numpy_iterator()))
      if self.batch_check:
        interrupts.check()
    self.validated.append((result.step, [int(v) for v in values]))


def test_sigterm_in_a_validation_saves_at_the_next_step():
  previous = interrupts.catch_sigterm()
  try:
    messages = []
    validation = _ValidationSignalled()
    loop, manager = _loop([-1.] * 5, [validation], num_steps=5)
    loop.log = messages.append
    with pytest.raises(interrupts.Terminated):
      loop.run()
  finally:
    signal.signal(signal.SIGTERM, previous)
  # The validation ran to its end; the loop stopped before step 3.
  assert validation.validated == [(2, [1, 2, 3])]
  assert manager.saved == [2] and int(loop.step) == 2
  assert messages == ["Interrupted at step 2; saved ckpt/ckpt-2."]
  assert signal.getsignal(signal.SIGTERM) is previous


def test_in_a_cluster_a_peer_interrupt_stops_every_worker_at_one_step():
  """Another worker's signal, agreed at the top of step 3: this one saves
  there too and raises `PeerInterrupted`."""
  messages, agreed = [], []

  def agree(stop, interrupted):
    agreed.append((stop, interrupted))
    return stop, interrupted or len(agreed) == 3

  loop, manager = _loop([-1.] * 5, [], num_steps=5)
  loop.log, loop.agree = messages.append, agree
  with pytest.raises(interrupts.PeerInterrupted):
    loop.run()
  assert agreed == [(False, False)] * 3
  assert manager.saved == [2] and int(loop.step) == 2
  assert messages == [
      "Interrupted at step 2 (another worker was); saved ckpt/ckpt-2."]


def test_in_a_cluster_a_signal_in_a_validation_waits_for_the_agreement():
  """This worker's SIGTERM inside a validation: no batch check raises it
  (the others would wait in a collective); the next step's agreement
  carries it, and this worker raises its own `Terminated`."""
  previous = interrupts.catch_sigterm()
  try:
    messages, agreed = [], []
    validation = _ValidationSignalled(batch_check=True)
    loop, manager = _loop([-1.] * 5, [validation], num_steps=5)

    def agree(stop, interrupted):
      agreed.append((stop, interrupted))
      return stop, interrupted

    loop.log, loop.agree = messages.append, agree
    with pytest.raises(interrupts.Terminated):
      loop.run()
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert validation.validated == [(2, [1, 2, 3])]
  assert agreed == [(False, False), (False, False), (False, True)]
  assert manager.saved == [2]
  assert messages == ["Interrupted at step 2; saved ckpt/ckpt-2."]
  assert signal.getsignal(signal.SIGTERM) is previous
