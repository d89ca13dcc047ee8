"""What the benchmarks share: the command line of a run and wall-clock
timing (imported by the scripts in this folder, which Python puts first on
the path when one is run as `python experiments/NAME.py`)."""

import os
import shlex
import sys
import time


def command_line():
  """The command that started this run, as one pasteable line."""
  python = os.path.relpath(sys.executable)
  if python.startswith(".."):
    python = sys.executable
  return shlex.join([python] + sys.argv)


def timed(fn, reps=1):
  """Wall-clock seconds of each of `reps` calls of fn (which blocks)."""
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times
