"""The prepared speech format: records, shards and the manifest."""

import json

import numpy as np
import pytest
import tensorflow as tf

from seqlvm.data.formats import speech
from seqlvm.errors import DataError


def test_an_utterance_round_trips_exactly():
  waveform = np.random.RandomState(0).uniform(-1, 1, 400).astype(np.float32)
  record = speech.encode_utterance(waveform)
  np.testing.assert_array_equal(speech.parse_utterance(tf.constant(record)),
                                waveform)


def test_shard_writer_starts_new_shards_past_the_size(tmp_path):
  writer = speech.ShardWriter(str(tmp_path), "train", shard_bytes=3000)
  for i in range(5):
    writer.write(speech.encode_utterance(np.full(300, i, np.float32)))
  writer.close()
  # A record of 300 samples is about 1,230 bytes: the third fills a shard.
  assert writer.shards == ["train-00000.tfrecord", "train-00001.tfrecord"]
  values = [[speech.parse_utterance(r).numpy()[0]
             for r in tf.data.TFRecordDataset(str(tmp_path / shard))]
            for shard in writer.shards]
  assert values == [[0, 1, 2], [3, 4]]


def _manifest(tmp_path):
  for split in ("train", "valid", "test"):
    (tmp_path / f"{split}-00000.tfrecord").write_bytes(b"")
  return {"format": speech.FORMAT, "version": speech.VERSION,
          "source": "/x", "layout": "folders", "sample_rate": 8000,
          "frame_size": 40, "mean": 0., "std": 0.1, "exclude_sa": False,
          "skipped": [], "resampled": 0,
          "splits": {s: {"shards": [f"{s}-00000.tfrecord"],
                         "num_sequences": 1, "num_frames": 3,
                         "lengths": [3], "files": ["a.wav"]}
                     for s in ("train", "valid", "test")}}


def test_manifest_round_trip_and_its_errors(tmp_path):
  manifest = _manifest(tmp_path)
  speech.write_manifest(manifest, str(tmp_path))
  assert speech.read_manifest(str(tmp_path)) == manifest
  path = tmp_path / speech.MANIFEST_NAME
  for change, message in (
      ({"format": "other"}, "not a seqlvm-speech manifest"),
      ({"version": 2}, "this seqlvm reads version 1"),
      ({"std": 0}, "std must be a positive number"),
      ({"mean": float("nan")}, "mean must be a finite number")):
    path.write_text(json.dumps({**manifest, **change}))
    with pytest.raises(DataError, match=message):
      speech.read_manifest(str(path))
  (tmp_path / "test-00000.tfrecord").unlink()
  path.write_text(json.dumps(manifest))
  with pytest.raises(DataError, match="test-00000.tfrecord: shard listed"):
    speech.read_manifest(str(tmp_path))
