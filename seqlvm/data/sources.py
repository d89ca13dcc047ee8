"""Datasets as a run sees them: sources of time-major tf.data batches.

Two kinds of source give the same batches, x float32 `[T, B, D]` and lengths
int32 `[B]` (time-major; the mask is `shapes.sequence_mask(lengths, T)`):

- `InMemorySource`: sequences held as numpy arrays (the pianoroll sets).
- `SpeechSource`: a prepared speech set (`seqlvm data from-audio`), streamed
  from its TFRecord shards: shards are interleaved, utterances pass through a
  bounded shuffle buffer and are normalised with the training mean and
  standard deviation on the fly, so training never holds the whole set.

Training batches are bucketed by length (`bucket_by_sequence_length`), so a
batch holds sequences of similar lengths and little padding. T is rounded up
to a multiple of `pad_to_multiple` so that the XLA-compiled training step
meets few shapes. With `max_length` > 0, training sequences longer than that
are cut into consecutive pieces of at most `max_length` steps (truncated
training: the model starts afresh on each piece); evaluation always covers
whole sequences.

Evaluation batches keep every sequence exactly once and pad the last batch of
each length bucket with empty sequences (length 0, which add exactly 0 to
every bound) up to the static batch size; a third element `real` `[B]` marks
the real ones.
"""

import abc
import hashlib
import math
import os

import numpy as np
import tensorflow as tf

from seqlvm.data.formats import pianoroll
from seqlvm.data.formats import speech

__all__ = ["Source", "InMemorySource", "SpeechSource", "as_source",
           "open_source",
           "bucket_boundaries", "chunk_sequences", "SHUFFLE_BUFFER"]

# Utterances held by the streaming shuffle buffer (about 50 MB for TIMIT).
SHUFFLE_BUFFER = 256
_MAX_BUCKETS = 16


class Source(abc.ABC):
  """What a run needs of its data: the declared interface of every source.

  Attributes:
    name: where the data is (a file or folder), for messages.
    kind: "pianoroll" or "speech": what the data is, and so how samples of
      it are written (`seqlvm.render.samples`).
    binary: whether the data is binary (a Bernoulli emission fits it).
    pipeline_id: the name and version of the input pipeline; a checkpoint
      holds its iterator's state, which only the same pipeline can resume.
    data_size: int D, the size of one step.
    train_mean: float32 `[D]`, the training mean (what models centre by).
    default_emission: the emission for the config's "auto".
  """

  name = ""
  kind = ""
  binary = False
  pipeline_id = ""
  data_size = 0
  train_mean = None
  default_emission = "gaussian"

  @abc.abstractmethod
  def fingerprint(self):
    """A digest of the content (a run refuses data whose digest changed)."""

  @abc.abstractmethod
  def num_sequences(self, split):
    """The number of sequences in `split`."""

  @abc.abstractmethod
  def num_timesteps(self, split):
    """The number of real steps in `split`."""

  @abc.abstractmethod
  def lengths(self, split):
    """int `[num_sequences]`: each sequence's length."""

  @abc.abstractmethod
  def max_length(self, split):
    """The longest sequence of `split` (0 if it is empty)."""

  @abc.abstractmethod
  def train_dataset(self, batch_size, seed=0, pad_to_multiple=1,
                    max_length=0):
    """Endless shuffled batches (x `[T, B, D]`, lengths `[B]`)."""

  @abc.abstractmethod
  def eval_dataset(self, split, batch_size, pad_to_multiple=1):
    """Every sequence once: (x `[T, B, D]`, lengths `[B]`, index `[B]`):
    index is the position in the split (-1: an empty filler)."""


def bucket_boundaries(max_length, pad_to_multiple, max_buckets=_MAX_BUCKETS):
  """Length-bucket boundaries: multiples of `pad_to_multiple`, at most
  `max_buckets` buckets up to `max_length`.

  Bucket i holds lengths in [boundaries[i-1], boundaries[i]); a boundary is
  one past a multiple of `pad_to_multiple`, so a bucket's longest member
  pads to a multiple of it.
  """
  multiple = max(int(pad_to_multiple), 1)
  width = multiple * max(1, math.ceil(max_length / (multiple * max_buckets)))
  return list(range(width + 1, int(max_length) + 1, width))


def chunk_sequences(sequences, max_length):
  """Cuts each sequence into consecutive pieces of at most `max_length`."""
  if not max_length:
    return list(sequences)
  return [s[i:i + max_length] for s in sequences
          for i in range(0, max(len(s), 1), max_length)]


def _time_major(pad_to_multiple):
  def fn(x, lengths, *rest):
    steps = tf.shape(x)[1]
    # At least one step: a batch of empty sequences still has a shape.
    target = tf.maximum(
        -(-steps // max(pad_to_multiple, 1)) * max(pad_to_multiple, 1), 1)
    x = tf.pad(x, [[0, 0], [0, target - steps], [0, 0]])
    return (tf.transpose(x, [1, 0, 2]), lengths) + rest
  return fn


def _bucketed(ds, data_size, batch_size, max_length, pad_to_multiple,
              drop_remainder, extra_shapes=()):
  boundaries = bucket_boundaries(max_length, pad_to_multiple)
  return ds.bucket_by_sequence_length(
      element_length_func=lambda x, n, *rest: n,
      bucket_boundaries=boundaries,
      bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
      padded_shapes=(tf.TensorShape([None, data_size]), tf.TensorShape([]))
      + tuple(extra_shapes),
      drop_remainder=drop_remainder)


def _eval_batches(ds, data_size, batch_size, max_length, pad_to_multiple):
  """(x, n) per sequence -> padded evaluation batches (x, lengths, index):
  index is each sequence's position in the split, -1 for the empty
  sequences that fill the last batches."""
  ds = ds.enumerate().map(lambda i, xn: (xn[0], xn[1], tf.cast(i, tf.int32)))
  ds = _bucketed(ds, data_size, batch_size, max_length, pad_to_multiple,
                 drop_remainder=False, extra_shapes=(tf.TensorShape([]),))

  def fill(x, n, index):  # Empty sequences up to the static batch size.
    missing = batch_size - tf.shape(n)[0]
    return (tf.pad(x, [[0, missing], [0, 0], [0, 0]]),
            tf.pad(n, [[0, missing]]),
            tf.pad(index, [[0, missing]], constant_values=-1))

  ds = ds.map(fill).map(_time_major(pad_to_multiple))
  return ds.prefetch(tf.data.AUTOTUNE)


def _chunk_dataset(ds, max_length, data_size):
  """Cuts (x `[T, D]`, T) elements into pieces of at most max_length."""
  def split(x, n):
    pieces = (n + max_length - 1) // max_length
    padded = tf.pad(x, [[0, pieces * max_length - n], [0, 0]])
    xs = tf.reshape(padded, [pieces, max_length, data_size])
    ns = tf.minimum(max_length, n - tf.range(pieces) * max_length)
    return tf.data.Dataset.from_tensor_slices((xs, ns)).map(
        lambda x, n: (x[:n], n))
  return ds.flat_map(split)


class InMemorySource(Source):
  """Sequences held in memory as float32 arrays `[T, D]`.

  Args:
    splits: dict split name -> list of arrays `[T_i, D]` (missing splits are
      empty). Every sequence has at least one timestep.
    train_mean: optional `[D]` mean of the training steps. Default value:
      computed from the training split.
    kind: "pianoroll" (binary data, Bernoulli emissions by default) or
      "real" (Gaussian emissions by default).
    name: for messages.
  """

  # Names the structure of `train_dataset`: a run resumes its input
  # iterator only from checkpoints of the same pipeline.
  pipeline_id = "in-memory/1"

  def __init__(self, splits, train_mean=None, kind="pianoroll", name=""):
    self.splits = {s: list(splits.get(s) or []) for s in pianoroll.SPLITS}
    self.kind = kind
    self.binary = kind == "pianoroll"
    self.name = name
    for split, sequences in self.splits.items():
      for i, s in enumerate(sequences):
        if not len(s):  # pylint: disable=g-explicit-length-test
          raise pianoroll.DataError(
              f"{name or 'dataset'}: split {split!r}, sequence {i} has no "
              "timesteps (every sequence needs at least one; it would count "
              "as a sequence in nats per sequence with no steps).")
    train = self.splits["train"]
    if not train:
      raise pianoroll.DataError(f"{name or 'dataset'}: the training split is "
                                "empty.")
    self.data_size = int(train[0].shape[1])
    if train_mean is None:
      steps = max(sum(len(s) for s in train), 1)
      train_mean = np.sum([s.sum(0) for s in train], axis=0) / steps
    self.train_mean = np.asarray(train_mean, np.float32)
    self.default_emission = "bernoulli" if kind == "pianoroll" else "gaussian"

  def sequences(self, split):
    if split not in self.splits:
      raise pianoroll.DataError(f"Unknown split {split!r}; choose one of "
                                f"{', '.join(pianoroll.SPLITS)}.")
    return self.splits[split]

  def num_sequences(self, split):
    return len(self.sequences(split))

  def lengths(self, split):
    """The length of each sequence of `split`."""
    return [len(s) for s in self.sequences(split)]

  def num_timesteps(self, split):
    return int(sum(self.lengths(split)))

  def max_length(self, split):
    return max(self.lengths(split), default=0)

  def _dataset(self, sequences):
    lengths = np.array([len(s) for s in sequences], np.int32)
    ragged = tf.RaggedTensor.from_row_lengths(
        np.concatenate([np.asarray(s, np.float32).reshape(-1, self.data_size)
                        for s in sequences], axis=0), lengths)
    return tf.data.Dataset.from_tensor_slices((ragged, lengths)).map(
        lambda x, n: (x.to_tensor() if isinstance(x, tf.RaggedTensor) else x,
                      n))

  def fingerprint(self):
    """sha256 of the sequences of every split (to recognise the data)."""
    h = hashlib.sha256()
    for split in pianoroll.SPLITS:
      h.update(f"{split} {len(self.splits[split])}\n".encode("ascii"))
      for s in self.splits[split]:
        s = np.ascontiguousarray(s, np.float32)
        h.update(np.asarray(s.shape, "<u4").tobytes())
        h.update(s.astype("<f4").tobytes())
    return h.hexdigest()

  def train_dataset(self, batch_size, seed=0, pad_to_multiple=1,
                    max_length=0):
    """Endless shuffled, length-bucketed training batches (x, lengths)."""
    sequences = chunk_sequences(self.splits["train"], max_length)
    ds = self._dataset(sequences)
    ds = ds.shuffle(len(sequences), seed=seed, reshuffle_each_iteration=True)
    ds = _bucketed(ds.repeat(), self.data_size, batch_size,
                   max(len(s) for s in sequences), pad_to_multiple,
                   drop_remainder=True)
    return ds.map(_time_major(pad_to_multiple)).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, split, batch_size, pad_to_multiple=1):
    """Every sequence of `split` once: batches (x, lengths, index)."""
    sequences = self.sequences(split)
    if not sequences:
      raise pianoroll.DataError(f"{self.name or 'dataset'}: the {split!r} "
                                "split is empty.")
    return _eval_batches(self._dataset(sequences), self.data_size,
                         batch_size, self.max_length(split), pad_to_multiple)


class SpeechSource(Source):
  """A prepared speech set, streamed from its TFRecord shards.

  Each record is one utterance: a tf.train.Example whose "samples" feature
  holds float32 samples (a whole number of frames). Frames are normalised
  with the training mean and standard deviation from the manifest.

  Args:
    path: the prepared folder or its manifest.json.
  """

  kind = "speech"
  default_emission = "gaussian"
  pipeline_id = "speech-shards/1"

  def __init__(self, path):
    self.manifest = speech.read_manifest(path)
    self.directory = (os.path.dirname(path) if os.path.isfile(path)
                      else path)
    self.name = self.directory
    self.data_size = int(self.manifest["frame_size"])
    self.sample_rate = int(self.manifest["sample_rate"])
    self.mean = float(self.manifest["mean"])
    self.std = float(self.manifest["std"])
    self.train_mean = np.zeros([self.data_size], np.float32)
    if self.num_sequences("train") == 0:
      raise pianoroll.DataError(f"{self.directory}: the training split is "
                                "empty.")

  def fingerprint(self):
    """sha256 of the manifest, which lists every shard's utterances."""
    with open(os.path.join(self.directory, speech.MANIFEST_NAME), "rb") as f:
      return hashlib.sha256(f.read()).hexdigest()

  def _split(self, split):
    if split not in pianoroll.SPLITS:
      raise pianoroll.DataError(f"Unknown split {split!r}; choose one of "
                                f"{', '.join(pianoroll.SPLITS)}.")
    return self.manifest["splits"].get(split) or {
        "shards": [], "num_sequences": 0, "num_frames": 0, "lengths": []}

  def num_sequences(self, split):
    return int(self._split(split)["num_sequences"])

  def num_timesteps(self, split):
    return int(self._split(split)["num_frames"])

  def max_length(self, split):
    return max(self._split(split)["lengths"], default=0)

  def lengths(self, split):
    """The length (in frames) of each utterance of `split`."""
    return list(self._split(split)["lengths"])

  def shards(self, split):
    return [os.path.join(self.directory, f)
            for f in self._split(split)["shards"]]

  def _parse(self, record):
    samples = speech.parse_utterance(record)
    with tf.control_dependencies([tf.debugging.assert_equal(
        tf.size(samples) % self.data_size, 0, message=(
            f"a record's length is not a multiple of the manifest's "
            f"frame_size {self.data_size}"))]):
      x = tf.reshape((samples - self.mean) / self.std, [-1, self.data_size])
    return x, tf.shape(x, out_type=tf.int32)[0]

  def train_dataset(self, batch_size, seed=0, pad_to_multiple=1,
                    max_length=0):
    """Endless streamed training batches (x, lengths), bucketed by length."""
    shards = self.shards("train")
    files = tf.data.Dataset.from_tensor_slices(shards).shuffle(
        len(shards), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = files.interleave(tf.data.TFRecordDataset,
                          cycle_length=min(4, len(shards)), block_length=1)
    ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed + 1,
                    reshuffle_each_iteration=True)
    ds = ds.map(self._parse, num_parallel_calls=2, deterministic=True)
    longest = self.max_length("train")
    if max_length:
      ds = _chunk_dataset(ds, max_length, self.data_size)
      ds = ds.shuffle(64, seed=seed + 2, reshuffle_each_iteration=True)
      longest = min(longest, max_length)
    ds = _bucketed(ds, self.data_size, batch_size, longest, pad_to_multiple,
                   drop_remainder=True)
    return ds.map(_time_major(pad_to_multiple)).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, split, batch_size, pad_to_multiple=1):
    """Every utterance of `split` once: batches (x, lengths, index)."""
    if self.num_sequences(split) == 0:
      raise pianoroll.DataError(f"{self.directory}: the {split!r} split is "
                                "empty.")
    ds = tf.data.TFRecordDataset(self.shards(split)).map(self._parse)
    return _eval_batches(ds, self.data_size, batch_size,
                         self.max_length(split), pad_to_multiple)

  def to_waveform(self, frames):
    """Normalised frames `[T, frame_size]` -> samples `[T * frame_size]`."""
    return (np.asarray(frames, np.float64).reshape(-1) * self.std +
            self.mean).astype(np.float32)


def as_source(dataset):
  """A `Source` as is; an object with .train / .valid / .test lists wrapped.

  Raises:
    TypeError: for an object with its own `train_dataset` that is not a
      `Source` (derive it from `Source`, which declares what a run reads).
  """
  if isinstance(dataset, Source):
    return dataset
  if hasattr(dataset, "train_dataset"):
    raise TypeError(
        f"{type(dataset).__name__} has a train_dataset but is not a "
        "seqlvm.data.sources.Source: derive it from Source (or from "
        "InMemorySource), which declares what a run reads of its data.")
  return InMemorySource(
      {s: getattr(dataset, s, None) for s in pianoroll.SPLITS},
      train_mean=getattr(dataset, "train_mean", None),
      name=getattr(dataset, "path", ""))


def open_source(path):
  """A pianoroll pickle or a prepared speech folder (or its manifest)."""
  if os.path.isdir(path) or os.path.basename(path) == speech.MANIFEST_NAME:
    return SpeechSource(path)
  rolls = pianoroll.load_pianoroll(path)
  return InMemorySource({s: rolls.split(s) for s in pianoroll.SPLITS},
                        train_mean=rolls.train_mean, name=path)
