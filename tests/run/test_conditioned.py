"""seqlvm continue / harmonize / inpaint through the command line on a tiny
run (`seqlvm.run.conditioned`)."""

import json

import numpy as np
import pytest

from seqlvm import cli
from seqlvm.data.formats import midi
from seqlvm.run import conditioned

SMALL = ["--hidden-size", "6", "--latent-size", "3", "--batch-size", "2",
         "--num-steps", "2", "--valid-every", "0", "--valid-samples", "0",
         "--no-jit", "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A tiny VRNN run and a tiny SRNN run (which refuses), and files."""
  from tests.conftest import write_tiny_pianorolls  # pylint: disable=g-import-not-at-top
  folder = tmp_path_factory.mktemp("conditioned")
  data = write_tiny_pianorolls(folder / "tiny.pkl")
  for model in ("vrnn", "srnn"):
    assert cli.main(["train", "--data", data, "--model", model,
                     "--run-dir", str(folder / model)] + SMALL) == 0
  roll = np.zeros([12, 88], np.float32)
  for t in range(12):
    roll[t, 40 + t % 5] = roll[t, 28] = 1.  # a tune over a held bass
  roll[5] = 0.  # a rest
  midi.write_midi(roll, folder / "tune.mid")
  np.savez(folder / "piece.npz", x=roll)
  return folder, roll


def test_melody_mask():
  roll = np.zeros([3, 88])
  roll[0, [10, 20]] = roll[2, 5] = 1.
  x, observed, top = conditioned.melody_mask(roll)
  assert top.tolist() == [20, -1, 5]
  assert observed[0, 20:].all() and not observed[0, :20].any()
  assert x[0].nonzero()[0].tolist() == [20]
  assert not observed[1].any()
  assert observed[2, 5:].all() and x[2].nonzero()[0].tolist() == [5]


def test_harmonize_keeps_the_melody_and_fills_below(runs, capsys):
  folder, roll = runs
  out = folder / "harmonized"
  assert cli.main(["harmonize", str(folder / "vrnn"), "--melody",
                   str(folder / "tune.mid"), "--num", "3",
                   "--num-particles", "8", "--out", str(out)]) == 0
  saved = np.load(out / "completions.npz")
  completions, observed = saved["completions"], saved["observed"]
  assert completions.shape == (3, 12, 88)
  assert set(np.unique(completions)) <= {0., 1.}
  _, expected, top = conditioned.melody_mask(midi.read_midi_roll(
      folder / "tune.mid"))
  np.testing.assert_array_equal(observed, expected)
  for completion in completions:
    for t, note in enumerate(top):
      if note >= 0:  # the melody note on, nothing above it
        assert completion[t, note] == 1. and not completion[t, note + 1:].any()
  # Each completion is a MIDI file that reads back as itself.
  for k, completion in enumerate(completions):
    back = midi.read_midi_roll(out / f"completion_{k:02d}.mid")
    np.testing.assert_array_equal(back, completion[:len(back)])
  record = json.loads((out / conditioned.RECORD).read_text())
  assert record["what"] == "harmonize" and record["num"] == 3
  assert len(record["log_p_hat_observed"]) == 3
  assert all(np.isfinite(record["log_p_hat_observed"]))
  png = (out / "completions.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  assert "Traceback" not in capsys.readouterr().err


def test_continue_and_inpaint(runs, capsys):
  folder, roll = runs
  out = folder / "continued"
  assert cli.main(["continue", str(folder / "vrnn"), "--prime",
                   str(folder / "tune.mid"), "--prime-steps", "8",
                   "--steps", "5", "--num", "2", "--num-particles", "8",
                   "--audio", "--out", str(out)]) == 0
  saved = np.load(out / "completions.npz")
  completions = saved["completions"]
  assert completions.shape == (2, 13, 88)
  np.testing.assert_array_equal(completions[:, :8],
                                np.broadcast_to(roll[:8], (2, 8, 88)))
  assert saved["observed"][:8].all() and not saved["observed"][8:].any()
  assert (out / "completion_01.wav").read_bytes()[:4] == b"RIFF"

  out = folder / "inpainted"
  assert cli.main(["inpaint", str(folder / "vrnn"), "--input",
                   str(folder / "piece.npz"), "--from", "3", "--to", "7",
                   "--num", "2", "--num-particles", "8", "--out",
                   str(out)]) == 0
  completions = np.load(out / "completions.npz")["completions"]
  keep = np.r_[0:3, 7:12]
  np.testing.assert_array_equal(completions[:, keep],
                                np.broadcast_to(roll[keep], (2, 8, 88)))
  assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["harmonize", "{srnn}", "--melody", "{tune}"],
     "SRNN does not take partial observations"),
    (["inpaint", "{vrnn}", "--input", "{piece}", "--from", "8", "--to",
      "40"], "--from and --to must satisfy 0 <= FROM < TO <= 12"),
    (["continue", "{vrnn}", "--prime", "{missing}"], "no such file"),
    (["continue", "{vrnn}", "--prime", "{tune}", "--prime-steps", "99"],
     "--prime-steps must be in 1..12"),
    (["continue", "{vrnn}", "--prime", "{pickle}"],
     "give a .mid, .npz or .wav file"),
])
def test_mistakes_get_one_message(runs, capsys, argv, message):
  folder, _ = runs
  names = {"srnn": folder / "srnn", "vrnn": folder / "vrnn",
           "tune": folder / "tune.mid", "piece": folder / "piece.npz",
           "missing": folder / "nothing.mid", "pickle": folder / "tiny.pkl"}
  assert cli.main([a.format(**names) for a in argv] +
                  ["--num-particles", "4", "--out",
                   str(folder / "unused")]) == 2
  err = capsys.readouterr().err
  assert message in err and "Traceback" not in err
  assert len(err.strip().splitlines()) <= 2  # the run line, the error
