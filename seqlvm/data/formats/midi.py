"""Pianorolls to and from standard MIDI files (with mido).

Writing: a binary roll `[T, 88]` becomes one track: a note starts where its
column turns on and ends where it turns off, so a note held over several
steps is one long note. Each step lasts `step_beats` beats (1 = a quarter
note, the JSB resolution) at `tempo_bpm`.

Reading: all tracks are merged and every note is quantised on the beat grid
in ticks, so tempo changes do not matter. With `step_ticks = step_beats *
ticks_per_beat`, a note from tick `on` to tick `off` sounds from step
`onset = round(on / step_ticks)` up to (not including) step
`max(onset + 1, round(off / step_ticks))`, halves rounding up, so every note
lasts at least one step. Reading a file that `write_midi` wrote, at the same
step length, gives the roll back (less any silent steps at its end).

Recommended import: `from seqlvm.data.formats import midi`.
"""

import mido
import numpy as np

from seqlvm import fileio
from seqlvm.data.formats import pianoroll

__all__ = ["write_midi", "read_midi", "read_midi_roll", "RESOLUTIONS",
           "DRUM_CHANNEL", "MAX_STEPS"]

TICKS_PER_BEAT = 480
# Step lengths in beats (quarter notes).
RESOLUTIONS = {"quarter": 1.0, "eighth": 0.5, "sixteenth": 0.25}
# Longer rolls are refused: a damaged delta time can put a note hours away
# (100000 sixteenths last about 3.5 hours at 120 beats per minute).
MAX_STEPS = 100_000
# General MIDI percussion: channel 10, which mido numbers 9.
DRUM_CHANNEL = 9
# What mido raises for a file it cannot parse.
_MIDO_ERRORS = (OSError, EOFError, KeyError, ValueError, IndexError,
                TypeError, mido.KeySignatureError)


def write_midi(roll, path, step_beats=1.0, tempo_bpm=100, velocity=80,
               program=0):
  """Writes a binary pianoroll `[T, 88]` to a MIDI file, atomically.

  Args:
    roll: array `[T, 88]`, values > 0.5 are on.
    path: the .mid file to write.
    step_beats: the length of one step in beats. Default value: 1.0.
    tempo_bpm: Default value: 100.
    velocity: note-on velocity. Default value: 80.
    program: General MIDI program (0 = acoustic grand piano).
  """
  roll = np.asarray(roll) > 0.5
  if roll.ndim != 2 or roll.shape[1] != pianoroll.NUM_NOTES:
    raise ValueError(f"roll must be [T, {pianoroll.NUM_NOTES}], got "
                     f"{roll.shape}.")
  step_ticks = int(round(step_beats * TICKS_PER_BEAT))
  track = mido.MidiTrack()
  track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm),
                                time=0))
  track.append(mido.Message("program_change", program=program, time=0))
  padded = np.concatenate([np.zeros([1, roll.shape[1]], bool), roll,
                           np.zeros([1, roll.shape[1]], bool)])
  events = []  # (tick, order, message); note-offs before note-ons.
  for t in range(1, len(padded)):
    tick = (t - 1) * step_ticks
    for j in np.flatnonzero(padded[t - 1] & ~padded[t]):
      events.append((tick, 0, "note_off", j + pianoroll.LOWEST_NOTE))
    for j in np.flatnonzero(~padded[t - 1] & padded[t]):
      events.append((tick, 1, "note_on", j + pianoroll.LOWEST_NOTE))
  events.sort()
  last = 0
  for tick, _, kind, note in events:
    track.append(mido.Message(kind, note=int(note),
                              velocity=velocity if kind == "note_on" else 0,
                              time=tick - last))
    last = tick
  # The track ends where the roll ends, so trailing silent steps survive.
  track.append(mido.MetaMessage("end_of_track",
                                time=max(len(roll) * step_ticks - last, 0)))
  midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
  midi.tracks.append(track)
  with fileio.atomic_write(path, "wb") as f:
    midi.save(file=f)


def _read_notes(path):
  """All notes of a MIDI file, in ticks.

  Returns:
    notes: int array `[K, 4]` of (channel, note, on_tick, off_tick).
    ticks_per_beat: from the file's header.
    end_tick: the tick of the file's last event (its end of track).
  """
  try:
    midi = mido.MidiFile(path)
    messages = mido.merge_tracks(midi.tracks)
  except _MIDO_ERRORS as e:
    reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    raise pianoroll.DataError(f"{path}: not a readable MIDI file "
                              f"({reason}).") from e
  if midi.type == 2:
    raise pianoroll.DataError(f"{path}: type 2 MIDI files (independent "
                              "sequences) are not supported.")
  if midi.ticks_per_beat <= 0:
    raise pianoroll.DataError(f"{path}: timecode (SMPTE) timing is not "
                              "supported; need ticks per beat.")
  notes, sounding, tick = [], {}, 0  # sounding: (channel, note) -> on tick.
  for message in messages:
    tick += message.time
    if message.type not in ("note_on", "note_off"):
      continue
    key = (message.channel, message.note)
    if key in sounding:  # A note-off, or a repeated note-on that ends it.
      notes.append(key + (sounding.pop(key), tick))
    if message.type == "note_on" and message.velocity > 0:
      sounding[key] = tick
  notes.extend(key + (on, tick) for key, on in sounding.items())
  # mido reads delta times of any length; keep ticks exact in float64.
  if tick > 2**53:
    raise pianoroll.DataError(f"{path}: an event at tick {tick}; is the file "
                              "damaged?")
  return (np.array(notes, np.int64).reshape([-1, 4]), midi.ticks_per_beat,
          tick)


def _step_beats(resolution):
  if resolution not in RESOLUTIONS:
    raise ValueError(f"Unknown resolution {resolution!r}; choose one of "
                     f"{', '.join(RESOLUTIONS)}.")
  return RESOLUTIONS[resolution]


def _quantise(path, step_beats):
  """-> (roll `[T, 88]`, counts); see `read_midi`."""
  notes, ticks_per_beat, end_tick = _read_notes(path)
  channel, note, on, off = notes.T
  drums = channel == DRUM_CHANNEL
  in_range = ((note >= pianoroll.LOWEST_NOTE) &
              (note <= pianoroll.HIGHEST_NOTE))
  keep = in_range & ~drums
  counts = {"notes": int(keep.sum()),
            "out_of_range": int((~in_range & ~drums).sum()),
            "drums": int(drums.sum())}
  step_ticks = step_beats * ticks_per_beat
  # Halves round up (np.round would send 0.5 to 0 but 1.5 to 2).
  onset = np.floor(on[keep] / step_ticks + 0.5).astype(np.int64)
  offset = np.maximum(onset + 1,
                      np.floor(off[keep] / step_ticks + 0.5).astype(np.int64))
  # The piece lasts to its last note or its end of track, if that is later
  # (trailing rests).
  end_step = int(np.floor(end_tick / step_ticks + 0.5)) if len(offset) else 0
  num_steps = max(int(offset.max(initial=0)), end_step)
  if num_steps > MAX_STEPS:
    raise pianoroll.DataError(
        f"{path}: {num_steps} steps of {step_beats} beats, more than "
        f"{MAX_STEPS}; is the file damaged?")
  # +1 at each onset and -1 at each offset; the running sum counts the
  # notes sounding on each key (overlapping notes of one key add up).
  change = np.zeros([num_steps + 1, pianoroll.NUM_NOTES], np.int32)
  column = note[keep] - pianoroll.LOWEST_NOTE
  np.add.at(change, (onset, column), 1)
  np.add.at(change, (offset, column), -1)
  roll = (np.cumsum(change, axis=0)[:num_steps] > 0).astype(np.float32)
  return roll, counts


def read_midi(path, resolution="quarter"):
  """Reads a MIDI file into a binary pianoroll, quantised on the beat grid.

  All tracks are merged. A note-on with velocity 0 is a note-off; a note-on
  of a (channel, note) that is already sounding ends the earlier note there;
  a note never turned off ends at the file's last event. Drum notes (channel
  10, mido's 9) and notes outside 21..108 are dropped and counted.

  Args:
    path: a standard MIDI file (type 0 or 1).
    resolution: the step length, one of `RESOLUTIONS`: "quarter" (1 beat),
      "eighth" (1/2) or "sixteenth" (1/4). Default value: "quarter".

  Returns:
    roll: binary float32 `[T, 88]`, T the step of the last note's end or
      the end of the track, whichever is later.
    counts: dict with "notes" (kept), "out_of_range" (dropped: outside
      21..108) and "drums" (dropped: on the drum channel).

  Raises:
    DataError: naming the file, for a file mido cannot read, a type 2 file,
      a file with no notes left to keep, or one longer than `MAX_STEPS`.
    ValueError: for an unknown resolution.
  """
  roll, counts = _quantise(path, _step_beats(resolution))
  if not counts["notes"]:
    raise pianoroll.DataError(
        f"{path}: no notes in {pianoroll.LOWEST_NOTE}.."
        f"{pianoroll.HIGHEST_NOTE} outside the drum channel "
        f"({counts['out_of_range']} out of range, {counts['drums']} drums).")
  return roll, counts


def read_midi_roll(path, step_beats=1.0):
  """Reads a MIDI file (e.g. from `write_midi`) into a roll `[T, 88]`.

  Like `read_midi` with a step of `step_beats` beats, except that a file with
  no notes gives an empty roll `[0, 88]`.

  Raises:
    DataError: naming the file, as `read_midi` does.
  """
  return _quantise(path, step_beats)[0]
