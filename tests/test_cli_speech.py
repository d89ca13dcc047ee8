"""Speech end to end: from-audio, train, eval and sample from the command line."""

import json

import numpy as np
import pytest
import soundfile

from seqlvm import cli
from seqlvm import data
from tests.conftest import FRAME
from tests.conftest import eval_records
from tests.conftest import RATE
from tests.conftest import write_corpus

@pytest.fixture(name="speech_folder")
def _speech_folder(tmp_path):
  return write_corpus(tmp_path / "corpus")


def test_prepare_train_eval_sample(speech_folder, tmp_path, monkeypatch,
                                   capsys):
  monkeypatch.setenv("SEQLVM_DATA_DIR", str(tmp_path / "data"))
  assert cli.main(["data", "from-audio", str(speech_folder), "--out",
                   "tiny-speech", "--frame-size", str(FRAME),
                   "--no-progress"]) == 0
  prepared = tmp_path / "data" / "tiny-speech"
  manifest = json.loads((prepared / "manifest.json").read_text())
  assert manifest["splits"]["test"]["num_sequences"] == 5

  run_dir = tmp_path / "run"
  assert cli.main(["train", "--data", "tiny-speech", "--run-dir",
                   str(run_dir), "--num-steps", "3", "--hidden-size", "8",
                   "--latent-size", "4", "--batch-size", "2",
                   "--valid-every", "3", "--no-jit", "--no-progress"]) == 0
  config = json.loads((run_dir / "config.json").read_text())
  assert config["emission"] == "auto"
  capsys.readouterr()
  # Validation put two samples into TensorBoard as audio at the set's rate.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(str(run_dir / "valid"))
  acc.Reload()
  assert "samples" in acc.Tags()["tensors"]
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  audio = tf.make_ndarray(acc.Tensors("samples")[0].tensor_proto)
  assert audio.shape == (2, 2) and audio[0, 0][:4] == b"RIFF"

  assert cli.main(["eval", str(run_dir), "--split", "test",
                   "--num-particles", "2", "--no-progress"]) == 0
  out = capsys.readouterr().out
  results = eval_records(run_dir, "test", 2)
  frames = manifest["splits"]["test"]["num_frames"]
  assert results["num_sequences"] == 5 and results["num_timesteps"] == frames
  for name in ("elbo", "iwae", "fivo"):
    r = results[name]
    assert np.isfinite(r["ll_per_t"]) and f"{name}" in out
    np.testing.assert_allclose(r["ll_per_seq"] * 5 / frames, r["ll_per_t"],
                               rtol=1e-6)
  # ELBO <= IWAE in expectation; with 5 sequences allow a little noise.
  assert results["elbo"]["ll_per_t"] <= results["iwae"]["ll_per_t"] + 0.5

  out_dir = tmp_path / "samples"
  assert cli.main(["sample", str(run_dir), "--num", "2", "--steps", "7",
                   "--out", str(out_dir)]) == 0
  for i in range(2):
    wav, rate = soundfile.read(out_dir / f"sample_{i:02d}.wav")
    assert rate == RATE and len(wav) == 7 * FRAME
    assert np.all(np.isfinite(wav)) and np.abs(wav).max() <= 1.
  assert (out_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # Conditioned generation from a recording: a continuation and a gap.
  recording = sorted((speech_folder / "test").glob("*.wav"))[0]
  frames_in = len(soundfile.read(recording)[0]) // FRAME
  out_dir = tmp_path / "continued"
  assert cli.main(["continue", str(run_dir), "--prime", str(recording),
                   "--prime-steps", "3", "--steps", "4", "--num", "2",
                   "--num-particles", "4", "--out", str(out_dir)]) == 0
  completions = np.load(out_dir / "completions.npz")["completions"]
  assert completions.shape == (2, 7, FRAME)
  for i in range(2):
    wav, rate = soundfile.read(out_dir / f"completion_{i:02d}.wav")
    assert rate == RATE and len(wav) == 7 * FRAME and np.all(np.isfinite(wav))
  out_dir = tmp_path / "inpainted"
  assert cli.main(["inpaint", str(run_dir), "--input", str(recording),
                   "--from", "1", "--to", "3", "--num", "1",
                   "--num-particles", "4", "--out", str(out_dir)]) == 0
  saved = np.load(out_dir / "completions.npz")
  assert saved["completions"].shape == (1, frames_in, FRAME)
  # Outside the gap, the recording's own (normalised) frames.
  np.testing.assert_array_equal(saved["completions"][0, 3:], saved["x"][3:])
  assert not np.array_equal(saved["completions"][0, 1:3], saved["x"][1:3])
  # A MIDI file for a speech run: one message.
  capsys.readouterr()
  (tmp_path / "tune.mid").write_bytes(b"MThd")
  assert cli.main(["continue", str(run_dir), "--prime",
                   str(tmp_path / "tune.mid"), "--out",
                   str(tmp_path / "x")]) == 2
  err = capsys.readouterr().err
  assert "this run models speech" in err and "Traceback" not in err


def test_gaussian_model_sees_normalised_frames(speech_folder, tmp_path):
  from seqlvm.data.prepare import from_audio  # pylint: disable=g-import-not-at-top
  out = tmp_path / "prepared"
  from_audio.from_audio(str(speech_folder), str(out), frame_size=FRAME,
                   progress=False, log=lambda m: None)
  src = data.open_source(str(out))
  assert src.kind == "speech" and src.default_emission == "gaussian"
  assert src.data_size == FRAME
  frames = []
  for x, n, index in src.eval_dataset("train", batch_size=4):
    for b in np.flatnonzero(index.numpy() >= 0):
      frames.append(x[:n[b], b].numpy())
  frames = np.concatenate(frames)
  assert len(frames) == src.num_timesteps("train")
  np.testing.assert_allclose(frames.mean(), 0., atol=1e-4)
  np.testing.assert_allclose(frames.std(), 1., rtol=1e-4)
  # Streaming training batches: static batch size, bucketed and padded.
  for x, n in src.train_dataset(batch_size=3, seed=0, pad_to_multiple=8,
                                max_length=10).take(5):
    assert x.shape[1] == 3 and x.shape[2] == FRAME and x.shape[0] % 8 == 0
    assert max(n) <= 10
  # Back to samples: the inverse of the normalisation.
  raw = (frames[:2].reshape(-1) * src.std + src.mean)
  np.testing.assert_allclose(src.to_waveform(frames[:2]), raw, rtol=1e-5,
                             atol=1e-6)


def test_bad_speech_input_gets_one_clear_message(tmp_path, capsys):
  empty = tmp_path / "empty"
  empty.mkdir()
  assert cli.main(["data", "from-audio", str(empty), "--out",
                   str(tmp_path / "x"), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert str(empty) in err and "Traceback" not in err
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "manifest.json").write_text("{not json")
  assert cli.main(["train", "--data", str(bad), "--run-dir",
                   str(tmp_path / "r"), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "manifest.json" in err and "Traceback" not in err
