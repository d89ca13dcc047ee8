import pickle

import numpy as np
import pytest

from seqlvm import data
from seqlvm.data.formats import midi
from tests.conftest import shared_pianoroll
from tests.conftest import write_tiny_pianorolls


def test_real_jsb_chorales():
  rolls = data.load_pianoroll(shared_pianoroll("jsb.pkl"))
  assert (len(rolls.train), len(rolls.valid), len(rolls.test)) == (229, 76, 77)
  assert all(r.shape[1] == 88 and r.dtype == np.float32 for r in rolls.train)
  assert max(len(r) for r in rolls.train + rolls.valid + rolls.test) == 160
  assert set(np.unique(rolls.train[0])) <= {0., 1.}
  # Four voices: about four notes sound per step; the mean matches.
  steps = np.concatenate(rolls.train)
  np.testing.assert_allclose(rolls.train_mean, steps.mean(0), rtol=1e-5)
  assert 3. < rolls.train_mean.sum() < 4.1


def test_roundtrip_notes_roll_notes(tiny_pianorolls):
  with open(tiny_pianorolls, "rb") as f:
    raw = pickle.load(f)
  rolls = data.load_pianoroll(tiny_pianorolls)
  for sequence, roll in zip(raw["train"], rolls.train):
    assert data.roll_to_notes(roll) == [tuple(s) for s in sequence]


def _write(tmp_path, obj, name="bad.pkl"):
  path = tmp_path / name
  with open(path, "wb") as f:
    pickle.dump(obj, f)
  return str(path)


GOOD = [[(60, 64), (62,)]]


@pytest.mark.parametrize("obj,message", [
    ([1, 2, 3], "expected a dict"),
    ({"train": GOOD, "valid": GOOD}, "split 'test' is missing"),
    ({"train": GOOD, "valid": [], "test": GOOD}, "split 'valid' is empty"),
    ({"train": [[(20,)]], "valid": GOOD, "test": GOOD},
     "outside 21..108"),
    ({"train": [[(60,), (109,)]], "valid": GOOD, "test": GOOD},
     "sequence 0: timestep 1: note 109"),
    ({"train": [[(float("nan"),)]], "valid": GOOD, "test": GOOD},
     "not an integer"),
    ({"train": "abc", "valid": GOOD, "test": GOOD}, "list of sequences"),
])
def test_malformed_pickles_name_the_file(tmp_path, obj, message):
  path = _write(tmp_path, obj)
  with pytest.raises(data.DataError, match=message) as info:
    data.load_pianoroll(path)
  assert path in str(info.value)


def test_not_a_pickle_and_missing_file(tmp_path):
  path = tmp_path / "notes.pkl"
  path.write_text("this is not a pickle")
  with pytest.raises(data.DataError, match="not a readable pickle") as info:
    data.load_pianoroll(path)
  assert str(path) in str(info.value)
  with pytest.raises(data.DataError, match="no such file"):
    data.load_pianoroll(tmp_path / "absent.pkl")


def test_pad_batch_is_time_major_and_padded(tmp_path):
  path = write_tiny_pianorolls(tmp_path / "t.pkl", min_len=3, max_len=20)
  rolls = data.load_pianoroll(path)
  subset = rolls.train[:3]
  x, lengths = data.pad_batch(subset, pad_to_multiple=8)
  np.testing.assert_array_equal(lengths, [len(r) for r in subset])
  assert x.shape[0] % 8 == 0 and x.shape[0] >= max(lengths)
  assert x.shape[1:] == (3, 88)
  for b, n in enumerate(lengths):
    np.testing.assert_array_equal(x[:n, b], subset[b])
    assert not np.any(x[n:, b])
  x, lengths = data.pad_batch(rolls.train[:2])
  assert x.shape == (max(lengths), 2, 88)


def test_midi_roundtrip(tmp_path):
  rolls = data.load_pianoroll(write_tiny_pianorolls(tmp_path / "t.pkl"))
  for roll in rolls.train[:3]:
    path = tmp_path / "x.mid"
    midi.write_midi(roll, path)
    back = midi.read_midi_roll(path)
    # Trailing silent steps carry no events; the rest is exact.
    np.testing.assert_array_equal(back, roll[:len(back)])
    assert not roll[len(back):].any()


def test_resolve_names_and_paths(tmp_path, monkeypatch):
  monkeypatch.setenv("SEQLVM_DATA_DIR", str(tmp_path))
  with pytest.raises(data.DataError, match="jsb"):
    data.resolve("jsb")
  with pytest.raises(data.DataError, match="no such file"):
    data.resolve(str(tmp_path / "nothing.pkl"))
  path = write_tiny_pianorolls(tmp_path / "jsb.pkl")
  assert data.resolve("jsb") == path
