"""A simple additive synthesiser for pianorolls (no sound font needed).

Each note, a run of consecutive on-steps of one pitch in a roll `[T, D]`, is
a sum of a few harmonics of its equal-tempered frequency
`440 * 2**((m - 69) / 12)` Hz for MIDI note m, shaped by a short linear
attack, a gentle exponential decay and a short linear release. The release
ends inside the note's own span, so notes never click and the waveform is
exactly `round(T * step_seconds * sample_rate)` samples long. The notes are
summed and the sum is scaled down to a peak of 0.9 if it is louder.

Recommended import: `from seqlvm.render import synth`.
"""

import numpy as np
import soundfile

from seqlvm import fileio

__all__ = ["render_roll", "write_wav", "note_spans", "HARMONICS"]

# Relative amplitudes of harmonics 1, 2, 3, 4 (a soft, organ-like tone).
HARMONICS = (1.0, 0.5, 0.25, 0.125)
NOTE_AMPLITUDE = 0.2  # Of the fundamental; four voices rarely exceed PEAK.
ATTACK_SECONDS = 0.01
RELEASE_SECONDS = 0.05
DECAY_SECONDS = 2.0  # Time constant of the exponential decay.
PEAK = 0.9


def note_spans(roll):
  """The notes of a binary roll: runs of consecutive on-steps per column.

  Args:
    roll: array `[T, D]`, values > 0.5 are on.

  Returns:
    columns: int `[K]`, the column of each note.
    starts: int `[K]`, its first step.
    ends: int `[K]`, one past its last step.
  """
  roll = np.asarray(roll) > 0.5
  if roll.ndim != 2:
    raise ValueError(f"roll must be [T, D], got shape {roll.shape}.")
  padded = np.pad(roll.astype(np.int8), [(1, 1), (0, 0)])
  change = np.diff(padded, axis=0).T  # [D, T + 1]
  # Row-major nonzero on [D, T + 1] lists each column's onsets (and offsets)
  # in time order, so the k-th onset pairs with the k-th offset.
  columns, starts = np.nonzero(change == 1)
  _, ends = np.nonzero(change == -1)
  return columns, starts, ends


def _tone(frequency, num_samples, sample_rate):
  """`sum_k HARMONICS[k] sin(2 pi (k + 1) f t)`, float32 `[num_samples]`.

  Harmonics at or above the Nyquist frequency are left out (no aliasing).
  """
  # Cycles in float64, reduced to one period before the float32 trig: a long
  # note's phase would lose its fraction in float32.
  cycles = (frequency / sample_rate) * np.arange(num_samples)
  theta = (2. * np.pi * (cycles - np.floor(cycles))).astype(np.float32)
  sin1, cos1 = np.sin(theta), np.cos(theta)
  tone = HARMONICS[0] * sin1
  # sin(k x) = 2 cos(x) sin((k - 1) x) - sin((k - 2) x): two trig calls for
  # all harmonics.
  two_cos1 = 2. * cos1
  previous, current = np.zeros_like(sin1), sin1
  for k, amplitude in enumerate(HARMONICS[1:], start=2):
    previous, current = current, two_cos1 * current - previous
    if k * frequency < sample_rate / 2:
      tone += np.float32(amplitude) * current
  return tone


def _envelope(num_samples, sample_rate):
  """Attack, exponential decay and a release ending at the last sample."""
  i = np.arange(num_samples, dtype=np.float32)
  attack = max(1, min(int(round(ATTACK_SECONDS * sample_rate)),
                      num_samples // 2))
  release = max(1, min(int(round(RELEASE_SECONDS * sample_rate)),
                       num_samples // 2))
  ramps = np.minimum(np.minimum(i / attack, (num_samples - 1 - i) / release),
                     np.float32(1.))
  return ramps * np.exp(i / np.float32(-DECAY_SECONDS * sample_rate))


def render_roll(roll, sample_rate=22050, step_seconds=0.6, lowest_note=21):
  """Renders a binary pianoroll as a mono waveform.

  Args:
    roll: array `[T, D]`, values > 0.5 are on; column j is MIDI note
      `lowest_note + j`.
    sample_rate: samples per second. Default value: 22050.
    step_seconds: the length of one step. Default value: 0.6 (a quarter
      note at 100 beats per minute, as `midi.write_midi` plays it).
    lowest_note: the MIDI note of column 0. Default value: 21.

  Returns:
    waveform: float32 `[round(T * step_seconds * sample_rate)]`, peak at most
      0.9 (all zeros for a silent roll).

  Raises:
    ValueError: for a roll that is not 2-D, or a non-positive sample rate or
      step length.
  """
  if sample_rate <= 0 or step_seconds <= 0:
    raise ValueError(f"sample_rate and step_seconds must be > 0, got "
                     f"{sample_rate} and {step_seconds}.")
  columns, starts, ends = note_spans(roll)
  samples_per_step = step_seconds * sample_rate
  num_samples = int(round(len(roll) * samples_per_step))
  waveform = np.zeros([num_samples], np.float32)
  # Step t starts at sample round(t * samples_per_step), as the total does.
  first = np.round(starts * samples_per_step).astype(np.int64)
  last = np.round(ends * samples_per_step).astype(np.int64)
  frequencies = 440. * 2.**((columns + lowest_note - 69) / 12.)
  # Notes of one pitch and length sound the same: render each kind once.
  cache = {}
  for a, b, frequency in zip(first, last, frequencies):
    key = (frequency, b - a)
    if key not in cache:
      cache[key] = (np.float32(NOTE_AMPLITUDE) *
                    _tone(frequency, b - a, sample_rate) *
                    _envelope(b - a, sample_rate))
    waveform[a:b] += cache[key]
  peak = np.max(np.abs(waveform), initial=0.)
  if peak > PEAK:
    waveform *= np.float32(PEAK / peak)
  return waveform


def write_wav(waveform, path, sample_rate):
  """Writes a waveform as 16-bit PCM WAV, atomically.

  Args:
    waveform: float array `[num_samples]` in [-1, 1]; louder samples are
      clipped.
    path: the .wav file to write.
    sample_rate: samples per second.

  Raises:
    ValueError: for a waveform that is not 1-D or not finite.
  """
  waveform = np.asarray(waveform, np.float32)
  if waveform.ndim != 1:
    raise ValueError(f"waveform must be [num_samples], got shape "
                     f"{waveform.shape}.")
  if not np.all(np.isfinite(waveform)):
    raise ValueError("waveform has NaN or infinite samples.")
  with fileio.atomic_write(path, "wb") as f:
    soundfile.write(f, np.clip(waveform, -1., 1.), int(sample_rate),
                    format="WAV", subtype="PCM_16")
