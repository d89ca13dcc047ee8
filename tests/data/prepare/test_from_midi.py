"""MIDI in: quantisation, dropped notes, bad files, and folders -> pickles."""

import pickle

import mido
import numpy as np
import pytest

from seqlvm import data
from seqlvm.data.formats import midi
from seqlvm.data.prepare import from_midi
from tests.conftest import shared_pianoroll


def _track(events):
  """(absolute tick, message) pairs -> a MidiTrack with delta times."""
  track, last = mido.MidiTrack(), 0
  for tick, message in sorted(events, key=lambda e: e[0]):
    track.append(message.copy(time=tick - last))
    last = tick
  return track


def _note(note, on, off, channel=0, ticks_per_beat=480, off_as_note_on=False):
  """A note from beat `on` to beat `off` (floats; ticks are rounded)."""
  off_message = (mido.Message("note_on", channel=channel, note=note,
                              velocity=0) if off_as_note_on else
                 mido.Message("note_off", channel=channel, note=note))
  return [(int(round(on * ticks_per_beat)),
           mido.Message("note_on", channel=channel, note=note, velocity=90)),
          (int(round(off * ticks_per_beat)), off_message)]


def _write(path, tracks, ticks_per_beat=480, type_=1):
  """Writes tracks (lists of (tick, message)) as a MIDI file."""
  midi_file = mido.MidiFile(type=type_, ticks_per_beat=ticks_per_beat)
  for events in tracks:
    midi_file.tracks.append(_track(events))
  path.parent.mkdir(parents=True, exist_ok=True)
  midi_file.save(path)
  return path


def _roll(spans, num_steps):
  """{midi note: [(start, end), ...]} -> binary `[num_steps, 88]`."""
  roll = np.zeros([num_steps, 88], np.float32)
  for note, ranges in spans.items():
    for start, end in ranges:
      roll[start:end, note - 21] = 1.
  return roll


# Notes in beats; a few ticks off the grid for 62, and ties for 67 and 72.
NOTES = [(60, 0., 1.), (64, 1., 3.), (67, .5, 1.), (72, 2.25, 2.5)]
EXPECTED = {
    # Halves round up: 67 starts at 0.5 quarters -> step 1 and lasts at
    # least one step; 72 spans 2.25..2.5 quarters -> steps 2..3.
    "quarter": ({60: [(0, 1)], 64: [(1, 3)], 67: [(1, 2)], 72: [(2, 3)],
                 62: [(3, 4)]}, 4),
    "eighth": ({60: [(0, 2)], 64: [(2, 6)], 67: [(1, 2)], 72: [(5, 6)],
                62: [(6, 8)]}, 8),
    "sixteenth": ({60: [(0, 4)], 64: [(4, 12)], 67: [(2, 4)], 72: [(9, 10)],
                   62: [(12, 16)]}, 16),
}


def _known_file(path, ticks_per_beat, tempo_change=True):
  conductor = [(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120)))]
  if tempo_change:  # Half speed from beat 2: must not move any step.
    conductor.append((2 * ticks_per_beat,
                      mido.MetaMessage("set_tempo",
                                       tempo=mido.bpm2tempo(60))))
  notes = []
  for note, on, off in NOTES:
    notes += _note(note, on, off, ticks_per_beat=ticks_per_beat)
  # Jittered: 2 ticks late, 3 ticks early.
  notes += [(3 * ticks_per_beat + 2, mido.Message("note_on", note=62,
                                                  velocity=70)),
            (4 * ticks_per_beat - 3, mido.Message("note_off", note=62))]
  return _write(path, [conductor, notes], ticks_per_beat)


@pytest.mark.parametrize("ticks_per_beat", [96, 480])
@pytest.mark.parametrize("resolution", ["quarter", "eighth", "sixteenth"])
def test_quantisation_on_the_beat_grid(tmp_path, resolution, ticks_per_beat):
  path = _known_file(tmp_path / "known.mid", ticks_per_beat)
  roll, counts = midi.read_midi(path, resolution)
  spans, num_steps = EXPECTED[resolution]
  assert roll.dtype == np.float32
  np.testing.assert_array_equal(roll, _roll(spans, num_steps))
  assert counts == {"notes": 5, "out_of_range": 0, "drums": 0}
  steady = _known_file(tmp_path / "steady.mid", ticks_per_beat,
                       tempo_change=False)
  np.testing.assert_array_equal(midi.read_midi(steady, resolution)[0], roll)


def test_drums_and_out_of_range_notes_are_dropped_and_counted(tmp_path):
  events = (_note(60, 0, 2) + _note(36, 0, 1, channel=9) +
            _note(42, 1, 2, channel=9) + _note(20, 0, 1) + _note(109, 1, 3) +
            _note(64, 2, 3, channel=3))
  roll, counts = midi.read_midi(_write(tmp_path / "x.mid", [events]))
  np.testing.assert_array_equal(roll, _roll({60: [(0, 2)], 64: [(2, 3)]}, 3))
  assert counts == {"notes": 2, "out_of_range": 2, "drums": 2}


def test_note_on_with_velocity_zero_ends_a_note(tmp_path):
  plain = [_note(60, 0, 2) + _note(64, 1, 3)]
  zero = [_note(60, 0, 2, off_as_note_on=True) +
          _note(64, 1, 3, off_as_note_on=True)]
  a, _ = midi.read_midi(_write(tmp_path / "a.mid", plain))
  b, _ = midi.read_midi(_write(tmp_path / "b.mid", zero))
  np.testing.assert_array_equal(a, _roll({60: [(0, 2)], 64: [(1, 3)]}, 3))
  np.testing.assert_array_equal(a, b)


def test_repeated_and_unterminated_notes(tmp_path):
  on = lambda note: mido.Message("note_on", note=note, velocity=80)
  events = [(0, on(60)), (480, on(60)), (960, mido.Message("note_off",
                                                           note=60)),
            (1440, on(65)), (1920, mido.Message("note_off", note=65)),
            (480, on(70)),  # Never turned off: ends at the last event.
            (2400, mido.MetaMessage("end_of_track"))]
  roll, counts = midi.read_midi(_write(tmp_path / "x.mid", [events]))
  expected = _roll({60: [(0, 2)], 65: [(3, 4)], 70: [(1, 5)]}, 5)
  np.testing.assert_array_equal(roll, expected)
  assert counts["notes"] == 4  # 60 twice (the repeat ends the first), 65, 70.


def test_tracks_are_merged(tmp_path):
  tracks = [_note(60, 0, 1), _note(64, 1, 2) + _note(67, 1, 2),
            _note(72, 2, 4, channel=5)]
  roll, counts = midi.read_midi(_write(tmp_path / "x.mid", tracks))
  expected = _roll({60: [(0, 1)], 64: [(1, 2)], 67: [(1, 2)], 72: [(2, 4)]},
                   4)
  np.testing.assert_array_equal(roll, expected)
  assert counts["notes"] == 4


def _random_roll(rng, num_steps):
  roll = (rng.rand(num_steps, 88) < .05).astype(np.float32)
  roll[-1, rng.randint(88)] = 1.  # Trailing silence carries no events.
  roll[2:7, 40] = 1.  # Held over several steps.
  return roll


@pytest.mark.parametrize("resolution", ["quarter", "eighth", "sixteenth"])
def test_roundtrip_write_then_read(tmp_path, resolution):
  rng = np.random.RandomState(5)
  step_beats = midi.RESOLUTIONS[resolution]
  for i in range(5):
    roll = _random_roll(rng, rng.randint(8, 40))
    if i % 2:  # Rests at the start and the end survive too.
      roll[:2] = 0.
      roll[-3:] = 0.
    path = tmp_path / f"{i}.mid"
    midi.write_midi(roll, path, step_beats=step_beats)
    back, counts = midi.read_midi(path, resolution)
    np.testing.assert_array_equal(back, roll)
    np.testing.assert_array_equal(midi.read_midi_roll(path, step_beats), roll)
    assert counts["out_of_range"] == counts["drums"] == 0


def test_real_jsb_roundtrips_through_midi(tmp_path):
  rolls = data.load_pianoroll(shared_pianoroll("jsb.pkl"))
  # Every training chorale, plus each with two bars of rest at the end.
  for i, roll in enumerate(rolls.train + [
      np.concatenate([r, np.zeros([8, 88], np.float32)])
      for r in rolls.train[:5]]):
    path = tmp_path / f"jsb{i}.mid"
    midi.write_midi(roll, path)
    back, _ = midi.read_midi(path)
    np.testing.assert_array_equal(back, roll)


def test_bad_files_name_the_file(tmp_path):
  text = tmp_path / "bad.mid"
  text.write_text("this is not a MIDI file")
  good = _write(tmp_path / "good.mid", [_note(60, 0, 1)])
  truncated = tmp_path / "truncated.mid"
  truncated.write_bytes(good.read_bytes()[:20])
  silent = _write(tmp_path / "silent.mid",
                  [[(0, mido.MetaMessage("set_tempo", tempo=500000))]])
  drums_only = _write(tmp_path / "drums.mid", [_note(36, 0, 1, channel=9)])
  type2 = _write(tmp_path / "type2.mid", [_note(60, 0, 1)], type_=2)
  # A damaged delta time can put a note-off days away.
  endless = _write(tmp_path / "endless.mid", [_note(60, 0, 200_000)])
  for path, message in [(text, "not a readable MIDI file"),
                        (truncated, "not a readable MIDI file"),
                        (tmp_path / "absent.mid", "not a readable MIDI file"),
                        (silent, "no notes"),
                        (drums_only, "no notes.*1 drums"),
                        (type2, "type 2"),
                        (endless, "200000 steps.*damaged")]:
    with pytest.raises(data.DataError, match=message) as info:
      midi.read_midi(path)
    assert str(path) in str(info.value)
  with pytest.raises(ValueError, match="quarter, eighth, sixteenth"):
    midi.read_midi(good, "whole")
  assert midi.read_midi_roll(silent).shape == (0, 88)


def _song(path, first_note, length=4):
  """A little file whose first note identifies it."""
  events = _note(first_note, 0, 1)
  for t in range(1, length):
    events += _note(60 + t, t, t + 1)
  return _write(path, [events])


def _first_notes(sequences):
  return sorted(s[0][0] for s in sequences)


def test_from_midi_with_split_folders(tmp_path):
  root = tmp_path / "midi"
  _song(root / "train" / "a.mid", 40)
  _song(root / "train" / "b.MID", 41)
  _song(root / "train" / "deeper" / "c.midi", 42, length=6)
  _song(root / "valid" / "d.mid", 43)
  _song(root / "test" / "e.mid", 44)
  _song(root / "elsewhere.mid", 45)  # Not in a split folder: ignored.
  messages = []
  report = from_midi.from_midi(root, tmp_path / "out.pkl", progress=False,
                                 log=messages.append)
  assert report["layout"] == "folders"
  assert report["splits"] == {"train": 3, "valid": 1, "test": 1}
  assert report["timesteps"] == 4 * 4 + 6
  assert report["skipped"] == []
  assert report["path"] == str(tmp_path / "out.pkl")
  with open(tmp_path / "out.pkl", "rb") as f:
    raw = pickle.load(f)
  assert _first_notes(raw["train"]) == [40, 41, 42]
  assert _first_notes(raw["valid"]) == [43]
  assert raw["test"][0] == [(44,), (61,), (62,), (63,)]
  rolls = data.load_pianoroll(tmp_path / "out.pkl")
  assert [len(r) for r in rolls.train] == [4, 4, 6]
  assert "train 3, valid 1, test 1" in messages[0]
  assert "Ignored 1" in messages[0]


def test_from_midi_shuffles_with_a_seed(tmp_path, capsys):
  root = tmp_path / "flat"
  for i in range(10):
    _song(root / f"song{i:02d}.mid", 40 + i)
  splits = {}
  for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
    report = from_midi.from_midi(root, tmp_path / f"{name}.pkl", seed=seed,
                                   resolution="eighth")
    assert report["layout"] == "shuffled"
    assert report["splits"] == {"train": 8, "valid": 1, "test": 1}
    assert report["timesteps"] == 10 * 8
    with open(tmp_path / f"{name}.pkl", "rb") as f:
      raw = pickle.load(f)
    splits[name] = {k: _first_notes(v) for k, v in raw.items()}
  assert splits["a"] == splits["b"]
  assert splits["a"] != splits["c"]
  assert sorted(sum(splits["a"].values(), [])) == list(range(40, 50))
  assert "Wrote" in capsys.readouterr().err


def test_from_midi_skips_bad_files_and_names_them(tmp_path):
  root = tmp_path / "midi"
  for i, split in enumerate(["train", "train", "valid", "test"]):
    _song(root / split / f"good{i}.mid", 40 + i)
  (root / "train" / "bad.mid").write_text("not MIDI at all")
  _write(root / "train" / "silent.mid",
         [[(0, mido.MetaMessage("set_tempo", tempo=500000))]])
  _write(root / "valid" / "noisy.mid",
         [_note(60, 0, 2) + _note(38, 0, 1, channel=9) + _note(10, 1, 2)])
  messages = []
  report = from_midi.from_midi(root, tmp_path / "out.pkl", progress=False,
                                 log=messages.append)
  assert report["splits"] == {"train": 2, "valid": 2, "test": 1}
  assert (report["out_of_range"], report["drums"]) == (1, 1)
  skipped = {s["file"]: s["reason"] for s in report["skipped"]}
  assert sorted(skipped) == [str(root / "train" / "bad.mid"),
                             str(root / "train" / "silent.mid")]
  assert "not a readable MIDI file" in skipped[str(root / "train" /
                                                   "bad.mid")]
  assert "no notes" in skipped[str(root / "train" / "silent.mid")]
  assert "bad.mid" in messages[0] and "silent.mid" in messages[0]
  assert "1 notes outside 21..108 and 1 drum notes" in messages[0]
  assert len(data.load_pianoroll(tmp_path / "out.pkl").train) == 2
  with pytest.raises(data.DataError, match="bad.mid.*--strict"):
    from_midi.from_midi(root, tmp_path / "strict.pkl", strict=True,
                          progress=False, log=messages.append)
  assert not (tmp_path / "strict.pkl").exists()


def test_from_midi_refuses_empty_folders_and_splits(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "notes.txt").write_text("no MIDI here")
  with pytest.raises(data.DataError, match="no MIDI files") as info:
    from_midi.from_midi(empty, tmp_path / "x.pkl", progress=False)
  assert str(empty) in str(info.value)
  # No test folder.
  root = tmp_path / "folders"
  _song(root / "train" / "a.mid", 40)
  _song(root / "valid" / "b.mid", 41)
  with pytest.raises(data.DataError, match="split 'test'.*add MIDI files"):
    from_midi.from_midi(root, tmp_path / "x.pkl", progress=False)
  # A test folder whose only file is bad.
  (root / "test").mkdir()
  (root / "test" / "bad.mid").write_text("not MIDI")
  with pytest.raises(data.DataError, match="split 'test' has no readable"):
    from_midi.from_midi(root, tmp_path / "x.pkl", progress=False,
                          log=lambda _: None)
  # Too few files for a 10% valid split.
  flat = tmp_path / "flat"
  for i in range(3):
    _song(flat / f"{i}.mid", 40 + i)
  with pytest.raises(data.DataError, match="split 'valid'.*fractions"):
    from_midi.from_midi(flat, tmp_path / "x.pkl", progress=False)
  assert not (tmp_path / "x.pkl").exists()
  with pytest.raises(ValueError, match="resolution"):
    from_midi.from_midi(flat, tmp_path / "x.pkl", resolution="whole")
