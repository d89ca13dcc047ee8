"""Conditioned generation from a run: `seqlvm continue`, `seqlvm harmonize`
and `seqlvm inpaint`.

Each builds x `[T, D]` and an `observed` mask `[T, D]` from the user's file
and hands them to `seqlvm.infer.impute` (K independent particle filters,
one completion each), then writes what `seqlvm sample` writes, with the
given part marked:

- continue: the primer (its first --prime-steps steps) observed, --steps
  more steps free;
- harmonize: the melody (the top line of the file: at each step its
  highest note) observed as on, every pitch above it observed as off,
  everything below free; a step where the melody rests is free;
- inpaint: every step observed except steps [--from, --to).

Files: completion_KK.mid (and .wav with --audio, or for speech), one PNG
with the K completions (given notes in blue, drawn notes in black, the
given region tinted) and the per-step note probability across them (how the
particles disagree), completions.npz (x, observed, the completions,
log p_hat of the observed part) and conditioned.json.

Recommended import: `from seqlvm.run import conditioned`.
"""

import os

import numpy as np
import tensorflow as tf

from seqlvm import fileio
from seqlvm import progress as progress_lib
from seqlvm.errors import ConfigError
from seqlvm.errors import DataError
from seqlvm.run import evaluation
from seqlvm.run import factory

__all__ = ["read_sequence", "continue_run", "harmonize_run", "inpaint_run",
           "melody_mask", "RECORD"]

RECORD = "conditioned.json"


def read_sequence(path, source, resolution="quarter"):
  """A file as the run's data: float32 `[T, D]`.

  .mid/.midi: a pianoroll (pianoroll runs); .npz: the array "x" (or the
  first one) `[T, D]` in the data's own units; .wav/.flac: speech runs,
  framed and normalised with the training statistics.

  Raises:
    DataError: naming the file, for a missing or unreadable file, another
      kind than the run's data, or a wrong size.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file.")
  extension = os.path.splitext(path)[1].lower()
  if extension in (".mid", ".midi"):
    if source.kind == "speech":
      raise DataError(f"{path}: a MIDI file, but this run models speech; "
                      "give a WAV file.")
    from seqlvm.data.formats import midi  # pylint: disable=g-import-not-at-top
    roll, _ = midi.read_midi(path, resolution)
    x = roll
  elif extension == ".npz":
    try:
      with np.load(path) as arrays:
        names = list(arrays.keys())
        if not names:
          raise DataError(f"{path}: holds no array.")
        x = np.asarray(arrays["x" if "x" in names else names[0]],
                       np.float32)
    except (OSError, ValueError, TypeError) as e:
      raise DataError(f"{path}: cannot be read as .npz of numbers "
                      f"({e}).") from e
  elif extension in (".wav", ".flac"):
    if source.kind != "speech":
      raise DataError(f"{path}: audio, but this run models pianorolls; "
                      "give a MIDI file.")
    x = _frames(path, source)
  else:
    raise DataError(f"{path}: give a .mid, .npz or .wav file.")
  x = np.asarray(x, np.float32)
  if x.ndim == 3 and x.shape[1] == 1:
    x = x[:, 0]
  if x.ndim != 2 or x.shape[1] != source.data_size:
    raise DataError(f"{path}: expected [T, {source.data_size}] (the run's "
                    f"data), got shape {list(x.shape)}.")
  if not len(x):
    raise DataError(f"{path}: has no steps.")
  if not np.all(np.isfinite(x)):
    raise DataError(f"{path}: holds NaN or infinite values.")
  return x


def _frames(path, source):
  from seqlvm.data.formats import recordings  # pylint: disable=g-import-not-at-top
  try:
    samples, rate = recordings.read_mono(path)
  except recordings.READ_ERRORS as e:
    raise DataError(f"{path}: cannot be read as audio ({e}).") from e
  if rate != source.sample_rate:
    raise DataError(f"{path}: {rate} Hz; the run's speech is at "
                    f"{source.sample_rate} Hz (resample it first).")
  size = source.data_size
  steps = len(samples) // size
  if not steps:
    raise DataError(f"{path}: shorter than one frame ({size} samples).")
  frames = samples[:steps * size].reshape(steps, size)
  return (frames - source.mean) / source.std


def melody_mask(roll):
  """The harmonisation's x and mask from a roll `[T, 88]`: at each step the
  highest sounding note on and every pitch above it off (observed), the
  pitches below free; a step with no note is free.

  Returns:
    x `[T, 88]`, observed bool `[T, 88]`, the melody's note index per step
    (-1 at a rest).
  """
  roll = np.asarray(roll) > 0.5
  steps, size = roll.shape
  top = np.where(roll.any(1), size - 1 - np.argmax(roll[:, ::-1], 1), -1)
  x = np.zeros([steps, size], np.float32)
  observed = np.zeros([steps, size], bool)
  for t, note in enumerate(top):
    if note >= 0:
      x[t, note] = 1.
      observed[t, note:] = True
  return x, observed, top


def _generate(run_dir, loaded, x, observed, what, source_file, num,
              num_particles, seed, out_dir, audio):
  """Completes x where `observed` is False, K ways, with the run `loaded`
  (`evaluation.load_run`'s result), and writes the files."""
  if num < 1 or num_particles < 1:
    raise ConfigError(f"--num and --num-particles must be >= 1, got {num} "
                      f"and {num_particles}.")
  config, source, model, path = loaded
  model = model.for_evaluation()
  try:
    model.check_partial_observations()
  except ValueError as e:
    raise ConfigError(f"{run_dir}: {e}") from e
  out_dir = out_dir or os.path.join(run_dir, what)
  fileio.check_writable_dir(out_dir, f"{what} folder")
  from seqlvm import infer  # pylint: disable=g-import-not-at-top
  result = infer.impute(model, x[:, np.newaxis], observed[:, np.newaxis],
                        num_particles=num_particles,
                        seed=tf.constant([seed, 0], tf.int32),
                        num_samples=num, independent=True)
  completions = result.samples.numpy()[:, :, 0]  # [K, T, D]
  log_marginal = result.log_marginal.numpy()[:, 0]  # [K]
  paths = _write(completions, observed, out_dir, os.path.basename(path),
                 source, factory.resolve_emission(config, source), audio,
                 what)
  npz = os.path.join(out_dir, "completions.npz")
  with fileio.atomic_write(npz, "wb") as f:
    np.savez(f, completions=completions, x=x, observed=observed,
             log_marginal=log_marginal)
  record = os.path.join(out_dir, RECORD)
  fileio.write_json({
      "what": what, "input": os.path.abspath(source_file),
      "checkpoint": os.path.relpath(path, run_dir), "num": num,
      "num_particles": num_particles, "seed": seed,
      "steps": int(len(x)), "observed_entries": int(observed.sum()),
      # log p_hat of the observed part, one per independent filter: their
      # log-mean-exp estimates log p(x_observed).
      "log_p_hat_observed": log_marginal.tolist(),
      "files": sorted(os.path.basename(p) for p in paths + [npz])}, record)
  return paths + [npz, record]


def _write(completions, observed, out_dir, checkpoint_name, source,
           emission, audio, what):
  from seqlvm.render import pictures  # pylint: disable=g-import-not-at-top
  from seqlvm.render import samples as samples_lib  # pylint: disable=g-import-not-at-top
  if source.kind == "speech":
    paths, waveforms = samples_lib.write_waveforms(completions, out_dir,
                                                   source, "completion")
    png = os.path.join(out_dir, "completions.png")
    pictures.write_waveform_png(
        waveforms, png, source.sample_rate,
        titles=[f"{what} {k} ({checkpoint_name}); given: "
                f"{_given_steps(observed)}" for k in range(len(waveforms))])
    return paths + [png]
  if emission != "bernoulli":
    return []
  paths = samples_lib.write_rolls(completions, out_dir, audio, "completion")
  png = os.path.join(out_dir, "completions.png")
  pictures.write_conditioned_png(
      completions, observed, png,
      titles=[f"{what} {k}: given notes blue, drawn notes black, the given "
              f"entries tinted ({checkpoint_name})"
              for k in range(len(completions))],
      summary_title=f"P(note) across the {len(completions)} completions")
  return paths + [png]


def _given_steps(observed):
  steps = np.flatnonzero(observed.any(1))
  return f"{len(steps)} of {len(observed)} steps"


def continue_run(run_dir, prime_file, steps, prime_steps=None, num=4,
                 num_particles=64, seed=0, out_dir=None, audio=False,
                 checkpoint="auto", resolution="quarter",
                 make_dataset_and_model=factory.make_dataset_and_model,
                 log=None):
  """`seqlvm continue`: K continuations of a primer; the files written."""
  log = log or progress_lib.message
  if steps < 1:
    raise ConfigError(f"--steps must be >= 1, got {steps}.")
  loaded = evaluation.load_run(run_dir, make_dataset_and_model, log,
                               "continue", checkpoint)
  prime = read_sequence(prime_file, loaded[1], resolution)
  if prime_steps is not None:
    if not 1 <= prime_steps <= len(prime):
      raise ConfigError(f"--prime-steps must be in 1..{len(prime)} (the "
                        f"length of {prime_file}), got {prime_steps}.")
    prime = prime[:prime_steps]
  x = np.concatenate([prime, np.zeros([steps, prime.shape[1]], np.float32)])
  observed = np.zeros(x.shape, bool)
  observed[:len(prime)] = True
  return _generate(run_dir, loaded, x, observed, "continue", prime_file, num,
                   num_particles, seed, out_dir, audio)


def harmonize_run(run_dir, melody_file, num=4, num_particles=64, seed=0,
                  out_dir=None, audio=False, checkpoint="auto",
                  resolution="quarter",
                  make_dataset_and_model=factory.make_dataset_and_model,
                  log=None):
  """`seqlvm harmonize`: K harmonisations of a melody's top line."""
  log = log or progress_lib.message
  loaded = evaluation.load_run(run_dir, make_dataset_and_model, log,
                               "harmonize", checkpoint)
  if loaded[1].kind == "speech":
    raise ConfigError(f"{run_dir}: harmonize is for pianoroll runs; this "
                      "run models speech.")
  roll = read_sequence(melody_file, loaded[1], resolution)
  x, observed, top = melody_mask(roll)
  if (top < 0).all():
    raise DataError(f"{melody_file}: no melody note.")
  return _generate(run_dir, loaded, x, observed, "harmonize", melody_file, num,
                   num_particles, seed, out_dir, audio)


def inpaint_run(run_dir, input_file, start, stop, num=4, num_particles=64,
                seed=0, out_dir=None, audio=False, checkpoint="auto",
                resolution="quarter",
                make_dataset_and_model=factory.make_dataset_and_model,
                log=None):
  """`seqlvm inpaint`: K fillings of steps [start, stop) given both sides."""
  log = log or progress_lib.message
  loaded = evaluation.load_run(run_dir, make_dataset_and_model, log,
                               "inpaint", checkpoint)
  x = read_sequence(input_file, loaded[1], resolution)
  if not 0 <= start < stop <= len(x):
    raise ConfigError(f"--from and --to must satisfy 0 <= FROM < TO <= "
                      f"{len(x)} (the steps of {input_file}), got {start} "
                      f"and {stop}.")
  observed = np.ones(x.shape, bool)
  observed[start:stop] = False
  return _generate(run_dir, loaded, x, observed, "inpaint", input_file, num,
                   num_particles, seed, out_dir, audio)
