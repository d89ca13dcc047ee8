"""Writing samples: the files each kind of data gets."""

import os

import numpy as np

from seqlvm.data import sources
from seqlvm.render import samples


def test_pianoroll_samples_are_midi_png_and_optionally_wav(tmp_path):
  source = sources.InMemorySource({"train": [np.ones([3, 88], np.float32)]})
  rng = np.random.RandomState(0)
  x = (rng.rand(2, 16, 88) < 0.05).astype(np.float32)
  paths = samples.write_samples(x, 0.5 * np.ones_like(x), str(tmp_path),
                                "ckpt-3", source, "bernoulli", audio=True)
  names = sorted(os.path.basename(p) for p in paths)
  assert names == ["sample_00.mid", "sample_00.png", "sample_00.wav",
                   "sample_01.mid", "sample_01.png", "sample_01.wav",
                   "samples.npz", "samples.png"]
  assert all(samples.SAMPLE_FILE.match(n) for n in names if "_0" in n)
  with np.load(tmp_path / "samples.npz") as f:
    np.testing.assert_array_equal(f["x"], x)


def test_speech_samples_are_wav_and_one_picture(tmp_path):
  # A real-valued source that renders as speech: frames back to a waveform.
  source = sources.InMemorySource({"train": [np.ones([3, 20], np.float32)]},
                                  kind="real")
  source.kind, source.sample_rate = "speech", 8000
  source.to_waveform = lambda frames: 0.1 * np.reshape(frames, [-1])
  x = np.random.RandomState(1).randn(3, 40, 20).astype(np.float32)
  paths = samples.write_samples(x, x, str(tmp_path), "ckpt-1", source,
                                "gaussian", audio=False)
  assert sorted(os.path.basename(p) for p in paths) == [
      "sample_00.wav", "sample_01.wav", "sample_02.wav", "samples.npz",
      "samples.png"]
