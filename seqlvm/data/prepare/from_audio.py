"""`seqlvm data from-audio`: a folder of recordings -> prepared speech.

`from_audio` turns any folder of .wav / .sph / .flac files (WAV and NIST
SPHERE are both read by libsndfile, so a TIMIT tree works as it comes) into
the prepared speech format of `seqlvm.data.formats.speech` (TFRecord shards
of utterances and a manifest with the training statistics).

Splits:
  - A TIMIT tree (top-level folders TRAIN and TEST, any case, and no valid
    folder) is split as FIVO's create_timit_dataset.py does: the sorted
    TRAIN paths are shuffled with `random.Random(1234)`; the first
    int(0.05 * n) are valid, but at least one when TRAIN holds two or more
    (so that a small TIMIT-layout tree still gets a valid split), the rest
    train; TEST is test. On the full TIMIT this gives 4389 / 231 / 1680
    utterances (SA sentences included; drop them with `exclude_sa=True`).
  - Otherwise `collect.split_files`: train / valid / test folders if there
    are, else a seeded shuffle with `valid_fraction` and `test_fraction`.

Bad files (unreadable, not audio, shorter than one frame, non-finite
samples) are skipped and listed at the end and in the manifest, or stop the
run with `strict=True`. The output folder appears whole or not at all.

Recommended import: `from seqlvm.data.prepare import from_audio`.

#### References
[1] Maddison, Lawson, Tucker, Heess, Norouzi, Mnih, Doucet, Teh. Filtering
    Variational Objectives. NeurIPS 2017. https://arxiv.org/abs/1705.09279
    (code: tensorflow/models research/fivo/fivo/data/create_timit_dataset.py)
"""

import collections
import functools
import os
import random
import shutil
import sys

import numpy as np
import soxr
import tqdm

from seqlvm.data.formats import recordings
from seqlvm.data.formats import speech
from seqlvm.data.prepare import collect
from seqlvm.errors import DataError

__all__ = ["from_audio", "timit_split", "TIMIT_SEED",
           "TIMIT_VALID_FRACTION"]


# FIVO's create_timit_dataset.py: random.seed(1234), valid_frac 0.05.
TIMIT_SEED = 1234
TIMIT_VALID_FRACTION = 0.05


def _top(path):
  return path.split("/", 1)[0].lower() if "/" in path else ""


def _is_timit(paths):
  tops = {_top(p) for p in paths}
  return "train" in tops and "test" in tops and "valid" not in tops


def _is_sa(path):
  return os.path.basename(path).lower().startswith("sa")


def timit_split(paths, exclude_sa=False):
  """FIVO's TIMIT split of relative paths under TRAIN/ and TEST/.

  Args:
    paths: relative paths ("TRAIN/DR1/FCJF0/SA1.WAV", ...); others ignored.
    exclude_sa: drop the SA1 / SA2 sentences (names starting with "SA", any
      case) before splitting. Default value: False (FIVO keeps them).

  Returns:
    splits: dict split -> sorted relative paths.
  """
  paths = [p for p in paths if not (exclude_sa and _is_sa(p))]
  train = sorted(p for p in paths if _top(p) == "train")
  test = sorted(p for p in paths if _top(p) == "test")
  random.Random(TIMIT_SEED).shuffle(train)
  # FIVO's int(0.05 * n), and at least one (of two or more) for small trees.
  num_valid = int(len(train) * TIMIT_VALID_FRACTION)
  if len(train) >= 2:
    num_valid = max(num_valid, 1)
  return {"train": sorted(train[num_valid:]),
          "valid": sorted(train[:num_valid]),
          "test": test}


def _drop_converted_copies(paths):
  """Drops "X.WAV.wav" where "X.WAV" exists (TIMIT copies with RIFF headers).

  Some TIMIT distributions ship each SPHERE file beside a converted copy;
  both would otherwise count as utterances.
  """
  have = set(paths)
  return [p for p in paths if not (
      os.path.splitext(p)[1].lower() in recordings.AUDIO_EXTENSIONS and
      os.path.splitext(p)[0] in have)]


def _check_not_nested(directory, paths, layout):
  """Refuses to shuffle a tree whose split folders sit one level down."""
  tops = {p.split("/", 1)[0] for p in paths}
  if layout != "shuffled" or len(tops) != 1 or "/" not in paths[0]:
    return
  inner = {_top(p.split("/", 1)[1]) for p in paths}
  if "train" in inner:
    raise DataError(
        f"{directory}: the split folders (train / test) are inside "
        f"{tops.pop()}/; pass that folder instead, or its files would be "
        "shuffled into new splits.")


def _reason(error):
  # LibsndfileError's str() repeats the path; keep libsndfile's own words.
  return getattr(error, "error_string", None) or str(error) or repr(error)


def _check_rates(infos, sample_rate):
  """The target rate: `sample_rate`, or the one rate all files share."""
  if sample_rate is not None:
    return int(sample_rate)
  by_rate = collections.OrderedDict()
  for path, info in infos.items():
    by_rate.setdefault(info.samplerate, []).append(path)
  if len(by_rate) > 1:
    lines = [f"  {rate} Hz: {len(files)} file(s), e.g. {files[0]}"
             for rate, files in sorted(by_rate.items())]
    raise DataError(
        "The recordings have different sample rates:\n" + "\n".join(lines) +
        "\nPass --sample-rate RATE (sample_rate=RATE) to resample them all "
        "to one rate.")
  return int(next(iter(by_rate)))


class _Moments:
  """Count, mean and sum of squared deviations, merged chunk by chunk.

  Chan et al.'s pairwise update in float64: the same result as sum and sum
  of squares, without their cancellation when the mean is far from zero.
  """

  def __init__(self):
    self.count = 0
    self.mean = 0.
    self.m2 = 0.

  def add(self, x):
    x = np.asarray(x, np.float64)
    n = x.size
    if not n:
      return
    mean = float(x.mean())
    m2 = float(np.square(x - mean).sum())
    total = self.count + n
    delta = mean - self.mean
    self.mean += delta * n / total
    self.m2 += m2 + delta * delta * self.count * n / total
    self.count = total

  @property
  def std(self):
    return float(np.sqrt(self.m2 / self.count)) if self.count else 0.


def _check_args(frame_size, sample_rate, shard_mb):
  if int(frame_size) != frame_size or frame_size < 1:
    raise DataError(f"frame_size must be a positive integer, got "
                    f"{frame_size!r}.")
  if sample_rate is not None and (int(sample_rate) != sample_rate or
                                  sample_rate < 1):
    raise DataError(f"sample_rate must be a positive integer, got "
                    f"{sample_rate!r}.")
  if not shard_mb > 0:
    raise DataError(f"shard_mb must be positive, got {shard_mb!r}.")


def _check_output(directory, out, force):
  source = os.path.realpath(directory)
  target = os.path.realpath(out)
  if source == target or source.startswith(target + os.sep):
    raise DataError(f"{out}: the output folder would contain the input "
                    f"folder {directory}; choose another output folder.")
  if os.path.exists(out) and not force:
    raise DataError(f"{out} already exists; pass --force (force=True) to "
                    "replace it.")
  if os.path.exists(out) and not os.path.isfile(
      os.path.join(out, speech.MANIFEST_NAME)):
    raise DataError(f"{out} exists and is not a prepared speech folder (no "
                    f"{speech.MANIFEST_NAME}); refusing to replace it even with "
                    "--force. Choose another output folder.")


def _replace_folder(tmp, out, force):
  """Renames `tmp` to `out`; with `force`, replaces an existing `out`."""
  if not os.path.exists(out):
    os.rename(tmp, out)
    return
  if not force:
    raise DataError(f"{out} already exists; pass --force (force=True) to "
                    "replace it.")
  old = f"{out}.old-{os.getpid()}"
  if os.path.exists(old):
    shutil.rmtree(old)
  os.rename(out, old)
  os.rename(tmp, out)
  shutil.rmtree(old, ignore_errors=True)


def _empty_split(directory, split, layout, splits, problems):
  assigned = len(splits[split])
  hint = {
      "timit": "",
      "folders": f" Put recordings under {split}/ too, or remove the split "
                 "folders to split by a seeded shuffle.",
      "shuffled": " Add recordings or raise --valid-fraction / "
                  "--test-fraction.",
  }[layout]
  message = (f"{directory}: the {split} split has no utterances ({layout} "
             f"layout, {assigned} file(s) assigned"
             f"{', all skipped' if assigned else ''}).{hint}")
  report = problems.report()
  return f"{message}\n{report}" if report else message


def _summary(manifest, total_bytes, problems):
  rate = manifest["sample_rate"]
  frame_size = manifest["frame_size"]
  lines = [f"Prepared {manifest['source']} ({manifest['layout']} layout) at "
           f"{rate} Hz, frames of {frame_size} samples:"]
  num_shards = 0
  for split, entry in manifest["splits"].items():
    hours = entry["num_frames"] * frame_size / rate / 3600
    lines.append(f"  {split}: {entry['num_sequences']} utterances, "
                 f"{entry['num_frames']} frames ({hours:.2f} h)")
    num_shards += len(entry["shards"])
  lines.append(f"  training mean {manifest['mean']:.6g}, std "
               f"{manifest['std']:.6g}")
  lines.append(f"  {num_shards} shard(s), {total_bytes / 2**20:.1f} MiB; "
               f"{manifest['resampled']} file(s) resampled")
  report = problems.report()
  if report:
    lines.append(report)
  return "\n".join(lines)


def from_audio(directory, out, frame_size=200, sample_rate=None, seed=0,
               valid_fraction=0.05, test_fraction=0.1, exclude_sa=False,
               shard_mb=128, strict=False, force=False, progress=True,
               log=None):
  """Prepares a folder of recordings as sharded TFRecords and a manifest.

  Every file is read as float64, mixed to mono by averaging its channels,
  resampled with soxr if its rate is not the target rate, and cut to a
  whole number of frames (the trailing partial frame is dropped). The
  training statistics are taken over these trimmed training samples, as
  stored (float32), accumulated in float64. Files are streamed one at a
  time: memory does not grow with the corpus.

  The output is the format of `seqlvm.data.formats.speech`.

  Args:
    directory: the input folder (searched recursively for .wav, .sph and
      .flac files, any case).
    out: the output folder; written as OUT.partial-PID and renamed.
    frame_size: samples per frame. Default value: 200 (FIVO).
    sample_rate: resample every file to this rate (Hz). Default value: None,
      which requires all files to share one rate.
    seed: shuffle seed when the folder has no split folders. Ignored for a
      TIMIT tree (FIVO's fixed seed 1234). Default value: 0.
    valid_fraction: share of the files for valid in a shuffled split.
      Ignored for a TIMIT tree (FIVO's 0.05). Default value: 0.05.
    test_fraction: share of the files for test in a shuffled split.
      Default value: 0.1.
    exclude_sa: drop TIMIT's SA1 / SA2 sentences (the same two sentences
      read by every speaker). Only for a TIMIT tree. Default value: False.
    shard_mb: start a new shard once the current one holds this many MiB.
      Default value: 128.
    strict: stop at the first bad file instead of skipping it. Default
      value: False.
    force: replace an existing `out`. Default value: False.
    progress: show a progress bar on stderr. Default value: True.
    log: called with the closing summary (one string). Default value:
      print to stderr.

  Returns:
    manifest: the dict written to OUT/manifest.json.

  Raises:
    DataError: no audio files; mixed sample rates without `sample_rate`; a
      split with no utterances; zero training variance; `out` exists
      without `force`; any bad file with `strict`.
  """
  log = log or functools.partial(print, file=sys.stderr)
  _check_args(frame_size, sample_rate, shard_mb)
  frame_size = int(frame_size)
  directory = os.path.abspath(os.fspath(directory))
  out = os.path.abspath(os.fspath(out))
  _check_output(directory, out, force)
  splits, layout, num_files = _assign_splits(
      directory, seed, valid_fraction, test_fraction, exclude_sa)
  problems = collect.Problems(strict=strict)
  infos = _read_headers(directory, splits, problems, progress, num_files)
  target_rate = _check_rates(infos, sample_rate)
  for split in collect.SPLITS:
    if not any(p in infos for p in splits[split]):
      raise DataError(_empty_split(directory, split, layout, splits, problems))

  tmp = f"{out}.partial-{os.getpid()}"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  try:
    writer = _SplitWriter(directory, tmp, frame_size, target_rate,
                          int(shard_mb * 2**20), problems)
    bar = tqdm.tqdm(total=len(infos), desc="Writing", unit="file",
                    file=sys.stderr, disable=not progress)
    with bar:
      entries = {split: writer.write_split(
          split, [p for p in splits[split] if p in infos], bar,
          lambda s=split: _empty_split(directory, s, layout, splits,
                                       problems))
                 for split in collect.SPLITS}
    if writer.moments.std == 0:
      raise DataError(f"{directory}: the training samples have zero "
                      "variance (all silent?); they cannot be normalised.")
    manifest = {
        "format": speech.FORMAT,
        "version": speech.VERSION,
        "source": directory,
        "layout": layout,
        "sample_rate": target_rate,
        "frame_size": frame_size,
        "mean": writer.moments.mean,
        "std": writer.moments.std,
        "exclude_sa": bool(exclude_sa),
        "splits": entries,
        "skipped": problems.to_list(),
        "resampled": writer.resampled,
    }
    speech.write_manifest(manifest, tmp)
    _replace_folder(tmp, out, force)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  log(_summary(manifest, writer.total_bytes, problems))
  return manifest


def _assign_splits(directory, seed, valid_fraction, test_fraction,
                   exclude_sa):
  """The files of each split, the layout that decided them, and the count
  of files found."""
  paths = collect.find_files(directory, recordings.AUDIO_EXTENSIONS)
  if not paths:
    raise DataError(f"{directory}: no audio files (.wav, .sph or .flac) "
                    "found in this folder or below it.")
  if _is_timit(paths):
    return (timit_split(_drop_converted_copies(paths), exclude_sa), "timit",
            len(paths))
  if exclude_sa:
    raise DataError(f"{directory}: exclude_sa (--exclude-sa) applies to a "
                    "TIMIT tree (top-level TRAIN and TEST folders) only.")
  splits, layout = collect.split_files(paths, seed, valid_fraction,
                                       test_fraction)
  _check_not_nested(directory, paths, layout)
  return splits, layout, len(paths)


def _read_headers(directory, splits, problems, progress, num_files):
  """First pass, headers only: {path: soundfile info} of readable files."""
  infos = {}
  for path in tqdm.tqdm([p for s in collect.SPLITS for p in splits[s]],
                        desc="Checking", unit="file", file=sys.stderr,
                        disable=not progress):
    try:
      infos[path] = recordings.info(os.path.join(directory, path))
    except recordings.READ_ERRORS as e:
      problems.add(path, f"not readable as audio: {_reason(e)}")
  if not infos:
    raise DataError(f"{directory}: none of the {num_files} audio file(s) "
                    f"could be read.\n{problems.report()}")
  return infos


class _SplitWriter:
  """Second pass: reads, resamples and frames each file, writes the shards
  and accumulates the training moments."""

  def __init__(self, directory, folder, frame_size, target_rate,
               shard_bytes, problems):
    self.directory = directory
    self.folder = folder
    self.frame_size = frame_size
    self.target_rate = target_rate
    self.shard_bytes = shard_bytes
    self.problems = problems
    self.moments = _Moments()
    self.total_bytes = 0
    self.resampled = 0

  def _frames(self, path):
    """The file's samples cut to whole frames, or None (a problem noted)."""
    try:
      waveform, rate = recordings.read_mono(os.path.join(self.directory,
                                                         path))
    except recordings.READ_ERRORS as e:
      self.problems.add(path, f"not readable as audio: {_reason(e)}")
      return None
    if not np.all(np.isfinite(waveform)):
      self.problems.add(path, "has non-finite samples (NaN or inf)")
      return None
    if rate != self.target_rate:
      waveform = soxr.resample(waveform, rate, self.target_rate)
      self.resampled += 1
    num_frames = len(waveform) // self.frame_size
    if not num_frames:
      self.problems.add(
          path, f"shorter than one frame of {self.frame_size} samples "
          f"({len(waveform)} samples at {self.target_rate} Hz)")
      return None
    return waveform[:num_frames * self.frame_size].astype(np.float32)

  def write_split(self, split, paths, bar, empty_message):
    """Writes `split`'s shards; returns its manifest entry."""
    writer = speech.ShardWriter(self.folder, split, self.shard_bytes)
    lengths, files = [], []
    try:
      for path in paths:
        bar.update(1)
        waveform = self._frames(path)
        if waveform is None:
          continue
        writer.write(speech.encode_utterance(waveform))
        if split == "train":
          self.moments.add(waveform)
        lengths.append(len(waveform) // self.frame_size)
        files.append(path)
    finally:
      writer.close()
    if not lengths:
      raise DataError(empty_message())
    self.total_bytes += writer.total_bytes
    return {"shards": writer.shards, "num_sequences": len(lengths),
            "num_frames": int(sum(lengths)), "lengths": lengths,
            "files": files}
