"""Writes sampled sequences as files: what `seqlvm sample` leaves.

For pianorolls: one MIDI file and one PNG pianoroll per sample, a PNG of all
of them (the sampled notes in black over the emission probabilities in grey,
so the picture shows what the model believes too) and, with `audio`, one WAV
per sample rendered by a simple additive synthesiser. For speech: one WAV
per sample (frames joined and de-normalised with the training statistics) at
the set's sample rate, and a PNG of the waveforms with their spectrograms.
Always samples.npz with the raw samples and the emission means.

Recommended import: `from seqlvm.render import samples`.
"""

import os
import re

import numpy as np

from seqlvm import fileio

__all__ = ["write_samples", "write_rolls", "write_waveforms",
           "tensorboard_media", "SAMPLE_FILE", "SYNTH_RATE"]

SYNTH_RATE = 22050
# The per-sample files `write_samples` names.
SAMPLE_FILE = re.compile(r"^sample_\d{2,}\.(mid|png|wav)$")


def write_waveforms(frames, out_dir, source, prefix="sample"):
  """Speech frames `[B, T, D]` as PREFIX_KK.wav at the set's rate, joined
  and de-normalised with the training statistics; (paths, waveforms)."""
  from seqlvm.render import synth  # pylint: disable=g-import-not-at-top
  paths = []
  waveforms = [np.clip(source.to_waveform(f), -1., 1.) for f in frames]
  for i, waveform in enumerate(waveforms):
    p = os.path.join(out_dir, f"{prefix}_{i:02d}.wav")
    synth.write_wav(waveform, p, source.sample_rate)
    paths.append(p)
  return paths, waveforms


def write_rolls(rolls, out_dir, audio, prefix="sample", titles=None):
  """Pianorolls `[B, T, 88]` as PREFIX_KK.mid, with `titles` a PNG of each
  too, and with `audio` a WAV of each (the additive synthesiser)."""
  from seqlvm.data.formats import midi  # pylint: disable=g-import-not-at-top
  from seqlvm.render import pictures  # pylint: disable=g-import-not-at-top
  from seqlvm.render import synth  # pylint: disable=g-import-not-at-top
  paths = []
  for i, roll in enumerate(rolls):
    p = os.path.join(out_dir, f"{prefix}_{i:02d}.mid")
    midi.write_midi(roll, p)
    paths.append(p)
    if titles is not None:
      png = os.path.join(out_dir, f"{prefix}_{i:02d}.png")
      pictures.write_pianoroll_png([roll], png, titles=[titles[i]])
      paths.append(png)
    if audio:
      wav = os.path.join(out_dir, f"{prefix}_{i:02d}.wav")
      synth.write_wav(synth.render_roll(roll, sample_rate=SYNTH_RATE), wav,
                      SYNTH_RATE)
      paths.append(wav)
  return paths


def _write_speech(x, out_dir, checkpoint_name, source):
  from seqlvm.render import pictures  # pylint: disable=g-import-not-at-top
  paths, waveforms = write_waveforms(x, out_dir, source)
  png = os.path.join(out_dir, "samples.png")
  pictures.write_waveform_png(
      waveforms, png, source.sample_rate,
      titles=[f"sample {i} ({checkpoint_name})" for i in range(len(x))])
  return paths + [png]


def _write_pianorolls(x, means, out_dir, checkpoint_name, audio):
  from seqlvm.render import pictures  # pylint: disable=g-import-not-at-top
  paths = write_rolls(x, out_dir, audio, titles=[
      f"sample {i} ({checkpoint_name})" for i in range(len(x))])
  png = os.path.join(out_dir, "samples.png")
  pictures.write_pianoroll_png(
      np.maximum(x, 0.6 * means), png,
      titles=[f"sample {i}: notes (black), their probabilities (grey); "
              f"{checkpoint_name}" for i in range(len(x))])
  return paths + [png]


def write_samples(x, means, out_dir, checkpoint_name, source, emission,
                  audio):
  """Writes samples x `[B, T, D]` (and their emission means) as files.

  Args:
    x: float `[B, T, D]`, the samples.
    means: float `[B, T, D]`, their emission means.
    out_dir: an existing, writable folder.
    checkpoint_name: named in the pictures' titles.
    source: the run's `seqlvm.data.sources.Source` (its kind decides the
      files; speech is de-normalised with its statistics).
    emission: the model's emission ("bernoulli" gives pianoroll files).
    audio: also render pianorolls as WAV.

  Returns:
    paths: the files written.
  """
  paths = []
  if source.kind == "speech":
    paths = _write_speech(x, out_dir, checkpoint_name, source)
  elif emission == "bernoulli":
    paths = _write_pianorolls(x, means, out_dir, checkpoint_name, audio)
  npz = os.path.join(out_dir, "samples.npz")
  with fileio.atomic_write(npz, "wb") as f:
    np.savez(f, x=x, means=means)
  return paths + [npz]


def tensorboard_media(x, means, source, emission, scale=3):
  """Samples as TensorBoard media: pianoroll pictures or speech audio.

  Args:
    x, means: float `[B, T, D]`, samples and their emission means.
    source: the run's `Source`.
    emission: the model's emission.
    scale: pixels per step and per pitch. Default value: 3.

  Returns:
    {"kind": "image", "data": float `[B, D * scale, T * scale, 1]` in
    [0, 1], the highest pitch on top, notes white over their
    probabilities in grey}, {"kind": "audio", "data": float `[B, samples,
    1]`, "sample_rate": int} for speech, or None for other data.
  """
  if source.kind == "speech":
    waveforms = np.stack([np.clip(source.to_waveform(frames), -1., 1.)
                          for frames in x])
    return {"kind": "audio", "data": waveforms[..., np.newaxis],
            "sample_rate": int(source.sample_rate)}
  if emission != "bernoulli":
    return None
  shade = np.maximum(x, 0.6 * means)  # [B, T, D]
  pictures = np.transpose(shade, [0, 2, 1])[:, ::-1, :]  # [B, D, T]
  pictures = np.repeat(np.repeat(pictures, scale, axis=1), scale, axis=2)
  return {"kind": "image",
          "data": np.clip(pictures, 0., 1.)[..., np.newaxis].astype(
              np.float32)}
