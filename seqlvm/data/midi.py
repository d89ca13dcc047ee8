"""Writing pianorolls as standard MIDI files (with mido).

A binary roll `[T, 88]` becomes one track: a note starts where its column
turns on and ends where it turns off, so a note held over several steps is one
long note. Each step lasts `step_beats` beats (1 = a quarter note, the JSB
resolution) at `tempo_bpm`.
"""

import mido
import numpy as np

from seqlvm import fileio
from seqlvm.data import pianoroll

__all__ = ["write_midi", "read_midi_roll"]

TICKS_PER_BEAT = 480


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
  track.append(mido.MetaMessage("end_of_track", time=0))
  midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
  midi.tracks.append(track)
  with fileio.atomic_write(path, "wb") as f:
    midi.save(file=f)


def read_midi_roll(path, step_beats=1.0):
  """Reads a MIDI file written by `write_midi` back into a roll `[T, 88]`.

  Notes are sampled at the start of each step, as the writer lays them out.
  """
  midi = mido.MidiFile(path)
  step_ticks = step_beats * midi.ticks_per_beat
  spans, active, tick = [], {}, 0
  for message in mido.merge_tracks(midi.tracks):
    tick += message.time
    if message.type == "note_on" and message.velocity > 0:
      active[message.note] = tick
    elif message.type in ("note_off", "note_on") and message.note in active:
      spans.append((message.note, active.pop(message.note), tick))
  num_steps = int(round(max((end for _, _, end in spans), default=0) /
                        step_ticks))
  roll = np.zeros([num_steps, pianoroll.NUM_NOTES], np.float32)
  for note, start, end in spans:
    if pianoroll.LOWEST_NOTE <= note <= pianoroll.HIGHEST_NOTE:
      roll[int(round(start / step_ticks)):int(round(end / step_ticks)),
           note - pianoroll.LOWEST_NOTE] = 1.
  return roll
