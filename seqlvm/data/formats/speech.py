"""The prepared speech format: TFRecord shards and their manifest.

This module owns the format, reading and writing; `seqlvm data from-audio`
(`seqlvm.data.prepare.from_audio`) writes it and the speech source
(`seqlvm.data.sources.SpeechSource`) reads it.

```
OUT/manifest.json          # the schema below
OUT/train-00000.tfrecord   # one record per utterance
OUT/train-00001.tfrecord   # a new shard every `shard_mb` MiB
OUT/valid-00000.tfrecord
OUT/test-00000.tfrecord
```

Each record is a serialized `tf.train.Example` with one feature, "samples":
a bytes_list holding the float32 little-endian waveform `[L]`, mono, at the
manifest's sample rate, values in [-1, 1] as read (not yet normalised), with
L a multiple of `frame_size` (the trailing partial frame is dropped). The
reader cuts it into frames `[L / frame_size, frame_size]` and normalises with
the manifest's training `mean` and `std` (FIVO, DESIGN.md section 6).

The manifest, OUT/manifest.json:

```
{"format": "seqlvm-speech", "version": 1,
 "source": absolute input folder,
 "layout": "timit" | "folders" | "shuffled",
 "sample_rate": int, "frame_size": int,
 "mean": float, "std": float,        # training samples, population std
 "exclude_sa": bool,
 "splits": {"train" | "valid" | "test": {
     "shards": ["train-00000.tfrecord", ...],   # relative to OUT
     "num_sequences": int, "num_frames": int,
     "lengths": [frames per record, in record order],
     "files": [input paths relative to the input folder, in record order]}},
 "skipped": [{"file": relative path, "reason": str}, ...],
 "resampled": int}                   # files resampled
```

TensorFlow is imported only by the functions that need it, so the names of
the format can be read without it.

Recommended import: `from seqlvm.data.formats import speech`.
"""

import json
import math
import os

from seqlvm import fileio
from seqlvm import registry
from seqlvm.errors import DataError

__all__ = ["FORMAT", "VERSION", "MANIFEST_NAME", "FEATURE",
           "encode_utterance", "parse_utterance", "ShardWriter",
           "write_manifest", "read_manifest"]

FORMAT = "seqlvm-speech"
VERSION = 1
MANIFEST_NAME = "manifest.json"
FEATURE = "samples"  # The one tf.train.Example feature: float32 LE bytes.

_RECORD_OVERHEAD = 16  # TFRecord framing: length, its CRC, the data CRC.
_MANIFEST_KEYS = ("format", "version", "source", "layout", "sample_rate",
                  "frame_size", "mean", "std", "exclude_sa", "splits",
                  "skipped", "resampled")
_SPLIT_KEYS = ("shards", "num_sequences", "num_frames", "lengths", "files")


def encode_utterance(waveform):
  """One record: the float32 little-endian samples `[L]` as an Example."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.train.Example(features=tf.train.Features(feature={
      FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[waveform.astype("<f4").tobytes()]))
  })).SerializeToString()


def parse_utterance(record):
  """The samples float32 `[L]` of a serialized record (inside tf.data)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  features = tf.io.parse_single_example(
      record, {FEATURE: tf.io.FixedLenFeature([], tf.string)})
  return tf.io.decode_raw(features[FEATURE], tf.float32, little_endian=True)


class ShardWriter:
  """Writes records to SPLIT-00000.tfrecord, ...; a new shard past a size.

  Args:
    folder: where the shards go.
    split: "train", "valid" or "test" (the shards' name prefix).
    shard_bytes: start a new shard once the current one holds this many.
  """

  def __init__(self, folder, split, shard_bytes):
    self.folder = folder
    self.split = split
    self.shard_bytes = shard_bytes
    self.shards = []
    self.total_bytes = 0
    self._writer = None
    self._size = 0

  def write(self, record):
    if self._writer is None or self._size >= self.shard_bytes:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      self.close()
      name = f"{self.split}-{len(self.shards):05d}.tfrecord"
      self._writer = tf.io.TFRecordWriter(os.path.join(self.folder, name))
      self.shards.append(name)
      self._size = 0
    self._writer.write(record)
    self._size += len(record) + _RECORD_OVERHEAD
    self.total_bytes += len(record) + _RECORD_OVERHEAD

  def close(self):
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def write_manifest(manifest, folder):
  """Writes folder/manifest.json atomically."""
  fileio.write_json(manifest, os.path.join(folder, MANIFEST_NAME))


def _load(path):
  if os.path.isdir(path):
    path = os.path.join(path, MANIFEST_NAME)
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file; prepare the folder with "
                    "`seqlvm data from-audio DIR --out NAME`.")
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except (ValueError, UnicodeDecodeError) as e:
    raise DataError(f"{path}: not valid JSON ({e}).") from e
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    found = manifest.get("format") if isinstance(manifest, dict) else None
    raise DataError(f"{path}: not a {FORMAT} manifest (format is "
                    f"{found!r}).")
  if manifest.get("version") != VERSION:
    raise DataError(f"{path}: version {manifest.get('version')!r}; this "
                    f"seqlvm reads version {VERSION}. Prepare it again.")
  missing = [k for k in _MANIFEST_KEYS if k not in manifest]
  if missing:
    raise DataError(f"{path}: missing key(s) {', '.join(missing)}.")
  return path, manifest


def _check_numbers(path, manifest):
  def positive(key, kind):
    value = manifest[key]
    return (isinstance(value, kind) and not isinstance(value, bool) and
            math.isfinite(value) and value > 0)

  for key, kind in (("frame_size", int), ("sample_rate", int),
                    ("std", (int, float))):
    if not positive(key, kind):
      raise DataError(f"{path}: {key} must be a positive number, got "
                      f"{manifest[key]!r}.")
  if not (isinstance(manifest["mean"], (int, float)) and
          math.isfinite(manifest["mean"])):
    raise DataError(f"{path}: mean must be a finite number, got "
                    f"{manifest['mean']!r}.")


def _check_splits(path, manifest):
  folder = os.path.dirname(os.path.abspath(path))
  splits = manifest["splits"]
  for split in registry.SPLITS:
    entry = splits.get(split) if isinstance(splits, dict) else None
    if not isinstance(entry, dict):
      raise DataError(f"{path}: no {split!r} split.")
    missing = [k for k in _SPLIT_KEYS if k not in entry]
    if missing:
      raise DataError(f"{path}: split {split!r} lacks "
                      f"{', '.join(missing)}.")
    if (len(entry["lengths"]) != entry["num_sequences"] or
        sum(entry["lengths"]) != entry["num_frames"]):
      raise DataError(f"{path}: split {split!r}: lengths disagree with "
                      "num_sequences / num_frames.")
    for shard in entry["shards"]:
      if not os.path.isfile(os.path.join(folder, shard)):
        raise DataError(f"{os.path.join(folder, shard)}: shard listed in "
                        f"{path} is missing; prepare the folder again.")


def read_manifest(path_or_dir):
  """Reads and checks a prepared speech folder's manifest.

  Args:
    path_or_dir: the prepared folder or its manifest.json.

  Returns:
    manifest: the dict described above; shard names are relative to the
      manifest's folder.

  Raises:
    DataError: naming the file, if the manifest is missing, not JSON, not a
      seqlvm-speech manifest, lacks a key, or lists a shard that is missing.
  """
  path, manifest = _load(os.fspath(path_or_dir))
  _check_numbers(path, manifest)
  _check_splits(path, manifest)
  return manifest
