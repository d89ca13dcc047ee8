"""The additive synthesiser: pitch, length, silence, level and WAV files."""

import numpy as np
import pytest
import soundfile

from seqlvm.render import synth


def _roll(notes_by_step, num_steps):
  roll = np.zeros([num_steps, 88], np.float32)
  for t, notes in notes_by_step.items():
    for note in notes:
      roll[t, note - 21] = 1.
  return roll


def test_held_a4_peaks_at_440_hz():
  sample_rate, step_seconds, num_steps = 22050, 0.6, 4
  roll = _roll({t: [69] for t in range(num_steps)}, num_steps)
  waveform = synth.render_roll(roll, sample_rate, step_seconds)
  assert waveform.dtype == np.float32
  assert waveform.shape == (int(round(num_steps * step_seconds *
                                      sample_rate)),)
  spectrum = np.abs(np.fft.rfft(waveform))
  frequencies = np.fft.rfftfreq(len(waveform), 1. / sample_rate)
  bin_width = frequencies[1]
  assert abs(frequencies[np.argmax(spectrum)] - 440.) <= bin_width
  # No click: the note fades in and out.
  assert abs(waveform[0]) < 1e-3 and abs(waveform[-1]) < 1e-3


@pytest.mark.parametrize("num_steps,sample_rate,step_seconds",
                         [(5, 22050, 0.6), (7, 16000, 0.125), (0, 8000, 1.)])
def test_silence_has_the_right_length(num_steps, sample_rate, step_seconds):
  waveform = synth.render_roll(np.zeros([num_steps, 88]), sample_rate,
                               step_seconds)
  assert waveform.shape == (int(round(num_steps * step_seconds *
                                      sample_rate)),)
  assert not waveform.any()


def test_chords_stay_below_full_scale():
  rng = np.random.RandomState(0)
  # 64 steps of four voices, plus a loud cluster held throughout.
  roll = _roll({t: 40 + 12 * np.arange(4) + rng.randint(0, 7, size=4)
                for t in range(64)}, 64)
  waveform = synth.render_roll(roll)
  assert 0.1 < np.max(np.abs(waveform)) <= 0.9 + 1e-6
  cluster = roll[:16].copy()
  cluster[:, 30:50] = 1.
  assert np.max(np.abs(synth.render_roll(cluster))) <= 0.9 + 1e-6
  # Each column's on-steps split into notes at the gaps.
  columns, starts, ends = synth.note_spans(_roll({0: [60], 1: [60, 62],
                                                   3: [60]}, 4))
  assert sorted(zip(columns + 21, starts, ends)) == [(60, 0, 2), (60, 3, 4),
                                                     (62, 1, 2)]


def test_write_wav_roundtrip(tmp_path):
  waveform = synth.render_roll(_roll({0: [60, 64], 1: [67]}, 3), 16000, 0.25)
  path = tmp_path / "sub" / "x.wav"
  synth.write_wav(waveform, path, 16000)
  back, sample_rate = soundfile.read(path)
  assert sample_rate == 16000
  assert back.shape == waveform.shape
  np.testing.assert_allclose(back, waveform, atol=1. / 2**15)
  assert soundfile.info(str(path)).subtype == "PCM_16"
  with pytest.raises(ValueError, match="NaN"):
    synth.write_wav(np.array([0., np.nan]), tmp_path / "nan.wav", 16000)
  assert not (tmp_path / "nan.wav").exists()
