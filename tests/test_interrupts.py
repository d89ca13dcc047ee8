"""Ctrl-C and SIGTERM held until a safe point (`seqlvm.interrupts`)."""

import contextlib
import os
import signal

import pytest

from seqlvm import interrupts


@pytest.fixture(name="sigterm_raises")
def _sigterm_raises():
  """SIGTERM raises `Terminated`, as under the command line."""
  previous = interrupts.catch_sigterm()
  yield
  signal.signal(signal.SIGTERM, previous)


def _send(signum=signal.SIGTERM):
  """Sends the signal to this process and runs Python lines, where its
  handler runs."""
  os.kill(os.getpid(), signum)
  for _ in range(1000):
    pass


@contextlib.contextmanager
def _failing_on_interrupt():
  """An interrupt that escapes is this test's failure, not the session's end
  (pytest stops at a KeyboardInterrupt)."""
  try:
    yield
  except KeyboardInterrupt as e:
    pytest.fail(f"{e!r} escaped")


def test_outside_held_the_signal_raises_at_once(sigterm_raises):
  del sigterm_raises
  with pytest.raises(interrupts.Terminated):
    _send()


def test_held_signals_wait_for_check(sigterm_raises):
  del sigterm_raises
  reached = []
  with pytest.raises(interrupts.Terminated):
    with interrupts.held():
      _send()
      reached.append("after the signal")
      interrupts.check()
      reached.append("after check")
  assert reached == ["after the signal"]
  with _failing_on_interrupt():
    interrupts.check()  # Raised once, not noted any more.


def test_ctrl_c_is_held_as_a_keyboard_interrupt():
  # Python's own Ctrl-C handler (a background job starts with SIGINT ignored).
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with pytest.raises(KeyboardInterrupt) as caught:
      with interrupts.held():
        _send(signal.SIGINT)
        interrupts.check()
  finally:
    signal.signal(signal.SIGINT, previous)
  assert not isinstance(caught.value, interrupts.Terminated)


def test_leaving_the_outermost_held_raises_what_was_noted(sigterm_raises):
  del sigterm_raises
  reached = []
  with pytest.raises(interrupts.Terminated):
    with interrupts.held():
      with interrupts.held():
        _send()
      reached.append("the inner one did not raise")
  assert reached == ["the inner one did not raise"]
  assert signal.getsignal(signal.SIGTERM) is interrupts.raise_terminated


def test_a_second_signal_raises_at_once(sigterm_raises):
  del sigterm_raises
  reached = []
  with pytest.raises(interrupts.Terminated):
    with interrupts.held():
      _send()
      reached.append("noted")
      _send()
      reached.append("not reached")
  assert reached == ["noted"]


def test_an_error_on_its_way_out_drops_the_noted_signal(sigterm_raises):
  del sigterm_raises
  with _failing_on_interrupt():
    with pytest.raises(ValueError):
      with interrupts.held():
        _send()
        raise ValueError("the run's own error")
    with interrupts.held():
      interrupts.check()  # Nothing left over from the last one.


def test_other_handlers_are_left_alone():
  seen = []
  previous = signal.signal(signal.SIGTERM, lambda *_: seen.append("mine"))
  try:
    with _failing_on_interrupt():
      with interrupts.held():
        _send()
        interrupts.check()
    assert seen == ["mine"]
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_deferred_checks_wait_for_raise_noted(sigterm_raises):
  """A cluster's training loop: no `check()` raises inside (a validation's
  either); the loop reads `noted()` and raises where the workers agree."""
  del sigterm_raises
  with pytest.raises(interrupts.Terminated):
    with interrupts.held(deferred=True):
      assert not interrupts.noted()
      _send()
      with _failing_on_interrupt():
        interrupts.check()
        with interrupts.held():  # An evaluation's, nested.
          interrupts.check()
      assert interrupts.noted()
      interrupts.raise_noted()
  assert not interrupts.noted()
  with pytest.raises(interrupts.Terminated):
    with interrupts.held():
      _send()
      interrupts.check()  # Not deferred any more.


def test_leaving_a_deferred_held_raises_what_was_left_noted(sigterm_raises):
  del sigterm_raises
  with pytest.raises(interrupts.Terminated):
    with interrupts.held(deferred=True):
      _send()
  with pytest.raises(interrupts.Terminated):
    with interrupts.held():
      _send()
      interrupts.check()  # Not deferred any more.
