"""Progress: a bar on a terminal, plain lines in a log file.

tqdm redraws its bar with carriage returns, which a log file that is not a
terminal keeps as hundreds of lines. `Progress` draws the bar only when its
stream is a terminal; elsewhere it writes one plain line every `every`
updates (or every `interval` seconds) and one at the end (for timed lines,
only when it printed one before, so short jobs stay silent):

    train: step 200/2000 (10%), fivo/step -8.1234, 3.21 steps/s, ETA 9m20s

`enabled=False` writes nothing (`--no-progress`).
"""

import sys
import time

__all__ = ["Progress", "format_duration", "message"]


def format_duration(seconds):
  """3725 -> '1h02m05s', 65 -> '1m05s', 4.2 -> '4s'."""
  seconds = int(round(max(seconds, 0)))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m{secs:02d}s"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"


def message(text, stream=None):
  """Writes a message line to stderr without breaking a bar on it."""
  stream = stream or sys.stderr
  isatty = getattr(stream, "isatty", None)
  if isatty and isatty():
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    tqdm.write(text, file=stream)
  else:
    print(text, file=stream, flush=True)


class Progress:
  """Counts work done, as a bar on a terminal or as plain lines.

  Args:
    total: the number of updates to the end.
    desc: what is counted, the line's first word ("train").
    unit: the unit's name ("step", "seq").
    initial: where the count starts (a resumed run's step).
    enabled: False shows nothing. Default value: True.
    every: a plain line every this many updates (None: only by time).
    interval: a plain line at least every this many seconds (None: only
      by count).
    leave: keep the bar on the terminal after the end. Default value: True.
    stream: where to write. Default value: sys.stderr.
  """

  def __init__(self, total, desc, unit="step", initial=0, enabled=True,
               every=None, interval=None, leave=True, stream=None):
    self.total = total
    self.desc = desc
    self.unit = unit
    self.n = self.initial = initial
    self.enabled = enabled
    self.every = every
    self.interval = interval
    self.stream = stream or sys.stderr
    self.postfix = {}
    self._start = self._last_time = time.time()
    self._last_n = initial
    self._lines = 0
    isatty = getattr(self.stream, "isatty", None)
    self.is_terminal = bool(isatty and isatty())
    self._bar = None
    if enabled and self.is_terminal:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit,
                       leave=leave, file=self.stream, dynamic_ncols=True)

  def update(self, n=1):
    self.n += n
    if self._bar is not None:
      self._bar.update(n)
      return
    if not self.enabled:
      return
    now = time.time()
    if (self.every and self.n % self.every == 0) or (
        self.interval and now - self._last_time >= self.interval):
      self._line(now)

  def set_postfix(self, values):
    """Values shown after the count ({"fivo/step": "-8.123"})."""
    self.postfix = dict(values)
    if self._bar is not None:
      self._bar.set_postfix(self.postfix)

  def line(self):
    """The plain progress line now."""
    now = time.time()
    rate = (self.n - self.initial) / max(now - self._start, 1e-9)
    parts = [f"{self.desc}: {self.unit} {self.n}/{self.total}" + (
        f" ({100 * self.n / self.total:.0f}%)" if self.total else "")]
    parts += [f"{k} {v}" for k, v in self.postfix.items()]
    parts.append(f"{rate:.3g} {self.unit}/s")
    if rate > 0 and self.total and self.n < self.total:
      parts.append(f"ETA {format_duration((self.total - self.n) / rate)}")
    return ", ".join(parts)

  def _line(self, now):
    print(self.line(), file=self.stream, flush=True)
    self._last_time, self._last_n = now, self.n
    self._lines += 1

  def write(self, text):
    """A message that does not break the bar."""
    message(text, self.stream)

  def close(self):
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    elif self.enabled and self.n != self._last_n and (
        self.every or self._lines):
      # The last count, for counted progress or after timed lines (a short
      # job that never printed a line stays silent).
      self._line(time.time())
    self.enabled = False
