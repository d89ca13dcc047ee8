"""Ctrl-C and SIGTERM, held until the code reaches a safe point.

`seqlvm train` stops on Ctrl-C or SIGTERM (`timeout`, a batch scheduler's
time limit, a plain `kill`) the way it stops at its step limit: it saves a
checkpoint at the step it reached and exits. Python runs a signal handler
at whatever Python line the main thread reaches next, and in a training
that line may be inside a function TensorFlow calls from C++ (tf.data
tracing a map function for a validation, say). An exception raised there
is mangled on its way back through the C++ frames (pybind11 replaces it
with a `RuntimeError`), so the loop never sees the interrupt, saves
nothing and ends with a traceback.

Inside `held()`, the two signals only note that they came; `check()` raises
the noted one (`KeyboardInterrupt` or `Terminated`) where the caller stands,
in plain Python: the training loop at each step and the evaluation loop at
each batch. Leaving the outermost `held()` raises it too. A second signal
while one is noted raises at once, so two Ctrl-Cs always stop. A signal is
held only if its handler raises (SIGINT's default handler, SIGTERM's
`raise_terminated`, which `catch_sigterm` installs for the command line);
a library user's own handlers, and the default SIGTERM that ends the
process, are left alone. Outside the main thread `held()` changes nothing.

In a cluster the workers must stop together, at one step, or the others
wait in a collective for the one that left. There the training loop holds
with `held(deferred=True)`: `check()` does not raise inside it (not in a
validation either), and the loop instead tells the other workers at each
step whether a signal is `noted()`, in the agreement it already makes on
stopping. Then every worker stops at that step and saves: the one that got
the signal raises it (`raise_noted()`), the others `PeerInterrupted`.

Recommended import: `from seqlvm import interrupts`.
"""

import contextlib
import signal
import threading

__all__ = ["Terminated", "PeerInterrupted", "raise_terminated",
           "catch_sigterm", "held", "check", "noted", "raise_noted"]


class Terminated(KeyboardInterrupt):
  """SIGTERM, raised as an interrupt: `timeout`, a batch scheduler's time
  limit or a plain `kill` stop a training as Ctrl-C does, which saves a
  checkpoint at the step it reached before it exits."""


class PeerInterrupted(KeyboardInterrupt):
  """Another worker of the cluster was interrupted (Ctrl-C or SIGTERM), so
  this one stops with it, at the same step, and saves as it does."""


def raise_terminated(signum, frame):
  """The SIGTERM handler that makes SIGTERM an interrupt (`Terminated`)."""
  del signum, frame
  raise Terminated()


def catch_sigterm():
  """Installs SIGTERM -> `Terminated`; returns the handler to restore (None
  where signals cannot be set: not the main thread)."""
  if threading.current_thread() is not threading.main_thread():
    return None
  return signal.signal(signal.SIGTERM, raise_terminated)


# The error each held signal raises, for the handlers that raise one.
_RAISES = {signal.SIGINT: (signal.default_int_handler, KeyboardInterrupt),
           signal.SIGTERM: (raise_terminated, Terminated)}

_depth = 0  # How many `held()` the main thread is inside.
_noted = None  # The error class of the signal noted, or None.
_deferred = 0  # How many `held(deferred=True)` the main thread is inside.


def _note(signum, frame):
  """The handler inside `held()`: notes the signal; a second one raises."""
  del frame
  global _noted
  error = _RAISES[signum][1]
  if _noted is not None:
    _noted = None
    raise error()
  _noted = error


@contextlib.contextmanager
def held(deferred=False):
  """Within: Ctrl-C and SIGTERM wait for `check()` or the end (see the
  module's docstring). Nests; the outermost installs and restores.

  Args:
    deferred: `check()` does not raise within either (nor in the `held()`
      nested inside); the caller reads `noted()` and raises with
      `raise_noted()` where its workers agree to stop. Leaving the outermost
      `held()` still raises a signal left noted.
  """
  global _depth, _noted, _deferred
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous, noted = {}, None
  _depth += 1
  _deferred += bool(deferred)
  try:  # (A second signal can raise from the handlers installed here.)
    if _depth == 1:
      for signum, (raising, _) in _RAISES.items():
        if signal.getsignal(signum) is raising:
          previous[signum] = signal.signal(signum, _note)
    yield
  finally:
    _depth -= 1
    _deferred -= bool(deferred)
    if not _depth:
      for signum, handler in previous.items():
        signal.signal(signum, handler)
      # Raised below unless an error is already on its way out.
      noted, _noted = _noted, None
  if noted is not None:
    raise noted()


def check():
  """Raises the interrupt noted inside `held()`, if one was, unless inside a
  `held(deferred=True)`."""
  if not _deferred:
    raise_noted()


def noted():
  """Whether a signal was noted inside `held()` and not raised yet."""
  return _noted is not None


def raise_noted():
  """Raises the interrupt noted inside `held()`, if one was, deferred or
  not."""
  global _noted
  if _noted is not None:
    error, _noted = _noted, None
    raise error()
