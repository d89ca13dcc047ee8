"""Speech preparation: folders of recordings -> TFRecord shards + manifest."""

import json
import os
import random
import shutil

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from seqlvm.data.prepare import from_audio
from seqlvm.data.formats import speech
from seqlvm.data.prepare import speech_demo
from seqlvm.data.formats.pianoroll import DataError

RATE = 16000
FRAME = 200
SPEAKERS = {"TRAIN": ("FCJF0", "FDAW0", "MDPK0", "MKLS0", "FETB0"),
            "TEST": ("MDAB0", "FELC0")}
SENTENCES = ("SA1", "SA2", "SI943", "SX13", "SX223", "SX313")


def _quiet(**kwargs):
  kwargs.setdefault("progress", False)
  kwargs.setdefault("log", lambda message: None)
  return kwargs


def _write(path, samples, rate=RATE, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  soundfile.write(path, samples, rate, **kwargs)


def _timit_tree(root, seed=0):
  """A TIMIT-layout tree of NIST SPHERE files (plus text files to ignore)."""
  rng = np.random.RandomState(seed)
  for top, speakers in SPEAKERS.items():
    for speaker in speakers:
      folder = os.path.join(root, top, "DR1", speaker)
      for sentence in SENTENCES:
        samples = (rng.randn(rng.randint(450, 1500)) * 0.1).clip(-1, 1)
        _write(os.path.join(folder, sentence + ".WAV"), samples,
               format="NIST", subtype="PCM_16")
        for ext in (".TXT", ".PHN"):
          with open(os.path.join(folder, sentence + ext), "w") as f:
            f.write("0 1000 h#\n")
  return str(root)


def _folders_tree(root, names=("train/a", "train/b", "valid/c", "test/d"),
                  rate=RATE, seed=0):
  rng = np.random.RandomState(seed)
  for name in names:
    _write(os.path.join(root, name + ".wav"),
           rng.uniform(-0.5, 0.5, rng.randint(300, 900)), rate,
           subtype="PCM_16")
  return str(root)


def _records(out, split):
  manifest = speech.read_manifest(out)
  files = [os.path.join(out, s) for s in manifest["splits"][split]["shards"]]
  waveforms = []
  for record in tf.data.TFRecordDataset(files):
    example = tf.io.parse_single_example(
        record, {speech.FEATURE: tf.io.FixedLenFeature([], tf.string)})
    waveforms.append(
        tf.io.decode_raw(example[speech.FEATURE], tf.float32).numpy())
  return waveforms


def _trimmed(path, frame_size=FRAME):
  samples, _ = soundfile.read(path, dtype="float32")
  return samples[:len(samples) // frame_size * frame_size]


def test_timit_split_records_and_statistics(tmp_path):
  src = _timit_tree(tmp_path / "timit")
  out = str(tmp_path / "out")
  manifest = from_audio.from_audio(src, out, **_quiet())
  assert manifest == speech.read_manifest(out)
  assert manifest["format"] == "seqlvm-speech" and manifest["version"] == 1
  assert manifest["layout"] == "timit"
  assert manifest["source"] == os.path.abspath(src)
  assert manifest["sample_rate"] == RATE and manifest["frame_size"] == FRAME
  assert manifest["skipped"] == [] and manifest["resampled"] == 0

  # FIVO's rule: sorted TRAIN paths, Random(1234).shuffle, first 5% valid.
  train = sorted(f"TRAIN/DR1/{s}/{n}.WAV" for s in SPEAKERS["TRAIN"]
                 for n in SENTENCES)
  random.Random(1234).shuffle(train)
  num_valid = int(len(train) * 0.05)
  assert num_valid == 1
  splits = manifest["splits"]
  assert set(splits["valid"]["files"]) == set(train[:num_valid])
  assert set(splits["train"]["files"]) == set(train[num_valid:])
  assert len(splits["test"]["files"]) == len(SPEAKERS["TEST"]) * 6
  assert all(f.startswith("TEST/") for f in splits["test"]["files"])

  for split, entry in splits.items():
    waveforms = _records(out, split)
    assert len(waveforms) == entry["num_sequences"] == len(entry["files"])
    for waveform, name, length in zip(waveforms, entry["files"],
                                      entry["lengths"]):
      expected = _trimmed(os.path.join(src, name))
      np.testing.assert_array_equal(waveform, expected)
      assert length == len(expected) // FRAME and length >= 2
    assert entry["num_frames"] == sum(entry["lengths"])
  train_samples = np.concatenate(_records(out, "train")).astype(np.float64)
  np.testing.assert_allclose(manifest["mean"], train_samples.mean(),
                             rtol=1e-9)
  np.testing.assert_allclose(manifest["std"], train_samples.std(), rtol=1e-9)


def test_timit_split_sizes():
  # The full TIMIT: 462 training and 168 test speakers, 10 sentences each.
  def tree(top, num_speakers):
    return [f"{top}/DR{k % 8 + 1}/S{k:03d}/{n}.WAV" for k in range(
        num_speakers) for n in ("SA1", "SA2", "SI1", "SI2", "SI3", "SX1",
                                "SX2", "SX3", "SX4", "SX5")]

  paths = tree("TRAIN", 462) + tree("TEST", 168) + ["README.wav"]
  sizes = {k: len(v) for k, v in from_audio.timit_split(paths).items()}
  assert sizes == {"train": 4389, "valid": 231, "test": 1680}
  sizes = {k: len(v) for k, v in from_audio.timit_split(
      paths, exclude_sa=True).items()}
  assert sizes == {"train": 3512, "valid": 184, "test": 1344}


def test_timit_converted_copies_are_dropped(tmp_path):
  src = _timit_tree(tmp_path / "timit")
  copy = os.path.join(src, "TEST", "DR1", "MDAB0", "SA1.WAV.wav")
  _write(copy, np.full(800, 0.1))
  manifest = from_audio.from_audio(src, str(tmp_path / "out"), **_quiet())
  assert manifest["splits"]["test"]["num_sequences"] == 12
  assert "TEST/DR1/MDAB0/SA1.WAV" in manifest["splits"]["test"]["files"]


def test_nested_timit_is_refused(tmp_path):
  src = _folders_tree(tmp_path / "src", names=("TIMIT/TRAIN/DR1/A/SI1",
                                               "TIMIT/TEST/DR1/B/SI2"))
  with pytest.raises(DataError, match="inside TIMIT/; pass that folder"):
    from_audio.from_audio(src, str(tmp_path / "out"), **_quiet())


def test_exclude_sa(tmp_path):
  src = _timit_tree(tmp_path / "timit")
  manifest = from_audio.from_audio(src, str(tmp_path / "out"), exclude_sa=True,
                              **_quiet())
  assert manifest["exclude_sa"] is True
  train = sorted(f"TRAIN/DR1/{s}/{n}.WAV" for s in SPEAKERS["TRAIN"]
                 for n in SENTENCES[2:])
  random.Random(1234).shuffle(train)
  splits = manifest["splits"]
  assert set(splits["valid"]["files"]) == set(train[:int(len(train) * .05)])
  assert set(splits["train"]["files"]) == set(train[int(len(train) * .05):])
  files = [f for e in splits.values() for f in e["files"]]
  assert len(files) == 7 * 4
  assert not any(os.path.basename(f).upper().startswith("SA") for f in files)


def test_exclude_sa_needs_timit(tmp_path):
  src = _folders_tree(tmp_path / "src")
  with pytest.raises(DataError, match="TIMIT"):
    from_audio.from_audio(src, str(tmp_path / "out"), exclude_sa=True, **_quiet())


def test_shards_roll_over(tmp_path):
  src = _timit_tree(tmp_path / "timit")
  out = str(tmp_path / "out")
  # About 1 KiB per shard: records of 400..1400 float32 samples overflow it.
  manifest = from_audio.from_audio(src, out, shard_mb=0.001, **_quiet())
  shards = manifest["splits"]["train"]["shards"]
  assert len(shards) == manifest["splits"]["train"]["num_sequences"] > 1
  assert shards[:2] == ["train-00000.tfrecord", "train-00001.tfrecord"]
  assert sorted(os.listdir(out)) == sorted(
      ["manifest.json"] + [s for e in manifest["splits"].values()
                           for s in e["shards"]])
  waveforms = _records(out, "train")
  for waveform, name in zip(waveforms, manifest["splits"]["train"]["files"]):
    np.testing.assert_array_equal(waveform, _trimmed(os.path.join(src, name)))


def test_folders_layout_mono_mix_and_flac(tmp_path):
  src = str(tmp_path / "src")
  rng = np.random.RandomState(3)
  stereo = rng.uniform(-0.5, 0.5, [1000, 2])
  _write(os.path.join(src, "train", "stereo.flac"), stereo, subtype="PCM_16")
  _folders_tree(src, names=("train/b", "valid/c", "test/d"))
  out = str(tmp_path / "out")
  manifest = from_audio.from_audio(src, out, **_quiet())
  assert manifest["layout"] == "folders"
  splits = manifest["splits"]
  assert splits["train"]["files"] == ["train/b.wav", "train/stereo.flac"]
  read, _ = soundfile.read(os.path.join(src, "train", "stereo.flac"))
  np.testing.assert_array_equal(_records(out, "train")[1],
                                read.mean(1)[:1000].astype(np.float32))


def test_resampling_keeps_the_pitch(tmp_path):
  src = str(tmp_path / "src")
  t = np.arange(RATE) / RATE
  for split in ("train", "valid", "test"):
    _write(os.path.join(src, split, "sine.wav"),
           0.5 * np.sin(2 * np.pi * 1000 * t), subtype="FLOAT")
  out = str(tmp_path / "out")
  manifest = from_audio.from_audio(src, out, sample_rate=8000, **_quiet())
  assert manifest["sample_rate"] == 8000 and manifest["resampled"] == 3
  (waveform,) = _records(out, "train")
  assert len(waveform) == RATE // 2
  assert manifest["splits"]["train"]["lengths"] == [RATE // 2 // FRAME]
  spectrum = np.abs(np.fft.rfft(waveform))
  peak = np.fft.rfftfreq(len(waveform), 1 / 8000)[np.argmax(spectrum)]
  assert abs(peak - 1000) <= 2


def test_mixed_rates_need_sample_rate(tmp_path):
  src = _folders_tree(tmp_path / "src")
  _write(os.path.join(src, "train", "low.wav"), np.zeros(800) + 0.1, 8000)
  with pytest.raises(DataError) as error:
    from_audio.from_audio(src, str(tmp_path / "out"), **_quiet())
  message = str(error.value)
  assert "16000 Hz: 4 file(s)" in message and "8000 Hz: 1 file(s)" in message
  assert "train/low.wav" in message and "--sample-rate" in message
  assert not os.path.exists(tmp_path / "out")


def test_bad_and_short_files_are_skipped(tmp_path):
  src = _folders_tree(tmp_path / "src")
  with open(os.path.join(src, "train", "junk.wav"), "w") as f:
    f.write("not a wave file\n")
  _write(os.path.join(src, "train", "short.wav"), np.full(150, 0.1))
  messages = []
  manifest = from_audio.from_audio(src, str(tmp_path / "out"), progress=False,
                              log=messages.append)
  skipped = {item["file"]: item["reason"] for item in manifest["skipped"]}
  assert set(skipped) == {"train/junk.wav", "train/short.wav"}
  assert "shorter than one frame of 200 samples" in skipped["train/short.wav"]
  assert manifest["splits"]["train"]["files"] == ["train/a.wav", "train/b.wav"]
  assert "train/junk.wav" in messages[0] and "train/short.wav" in messages[0]
  assert "train: 2 utterances" in messages[0]

  with pytest.raises(DataError, match="junk.wav"):
    from_audio.from_audio(src, str(tmp_path / "strict"), strict=True, **_quiet())
  # A problem found while writing: the partial output is removed.
  os.remove(os.path.join(src, "train", "junk.wav"))
  with pytest.raises(DataError, match="short.wav: shorter than one frame"):
    from_audio.from_audio(src, str(tmp_path / "strict"), strict=True, **_quiet())
  assert sorted(os.listdir(tmp_path)) == ["out", "src"]


def test_empty_folder_and_empty_split(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match="empty: no audio files"):
    from_audio.from_audio(str(tmp_path / "empty"), str(tmp_path / "out"),
                     **_quiet())
  src = _folders_tree(tmp_path / "src", names=("train/a", "test/b"))
  with pytest.raises(DataError, match="valid split has no utterances"):
    from_audio.from_audio(src, str(tmp_path / "out"), **_quiet())
  assert not [p for p in os.listdir(tmp_path) if "out" in p]


def test_silence_has_no_std(tmp_path):
  src = str(tmp_path / "src")
  for split in ("train", "valid", "test"):
    _write(os.path.join(src, split, "quiet.wav"), np.zeros(400))
  with pytest.raises(DataError, match="zero variance"):
    from_audio.from_audio(src, str(tmp_path / "out"), **_quiet())


def test_existing_output_needs_force(tmp_path):
  src = _folders_tree(tmp_path / "src")
  out = tmp_path / "out"
  out.mkdir()
  (out / "old.txt").write_text("old")
  with pytest.raises(DataError, match="--force"):
    from_audio.from_audio(src, str(out), **_quiet())
  assert (out / "old.txt").exists()
  # Not a prepared set: even --force leaves it alone.
  with pytest.raises(DataError, match="not a prepared speech folder"):
    from_audio.from_audio(src, str(out), force=True, **_quiet())
  assert (out / "old.txt").read_text() == "old"
  # A prepared set is replaced with --force.
  out = tmp_path / "prepared"
  from_audio.from_audio(src, str(out), **_quiet())
  (out / "old.txt").write_text("old")
  from_audio.from_audio(src, str(out), force=True, **_quiet())
  assert not (out / "old.txt").exists()
  assert speech.read_manifest(str(out))["splits"]["train"]["num_sequences"] == 2
  assert sorted(os.listdir(tmp_path)) == ["out", "prepared", "src"]
  with pytest.raises(DataError, match="contain the input"):
    from_audio.from_audio(src, str(tmp_path), force=True, **_quiet())


def test_shuffled_split(tmp_path):
  names = [f"clip{i:02d}" for i in range(20)]
  src = _folders_tree(tmp_path / "src", names=names)
  manifest = from_audio.from_audio(src, str(tmp_path / "out"), seed=5,
                              valid_fraction=0.1, test_fraction=0.2,
                              **_quiet())
  assert manifest["layout"] == "shuffled"
  counts = [manifest["splits"][s]["num_sequences"]
            for s in ("train", "valid", "test")]
  assert counts == [14, 2, 4]


def test_read_manifest_errors(tmp_path):
  with pytest.raises(DataError, match="manifest.json: no such file"):
    speech.read_manifest(str(tmp_path))
  src = _folders_tree(tmp_path / "src")
  out = tmp_path / "out"
  from_audio.from_audio(src, str(out), **_quiet())
  path = out / "manifest.json"
  manifest = json.loads(path.read_text())

  os.remove(out / "valid-00000.tfrecord")
  with pytest.raises(DataError, match="valid-00000.tfrecord: shard listed"):
    speech.read_manifest(str(path))
  path.write_text(json.dumps(dict(manifest, format="pianoroll")))
  with pytest.raises(DataError, match="not a seqlvm-speech manifest"):
    speech.read_manifest(str(out))
  path.write_text(json.dumps({k: v for k, v in manifest.items()
                              if k != "mean"}))
  with pytest.raises(DataError, match="missing key.*mean"):
    speech.read_manifest(str(out))
  path.write_text("{not json")
  with pytest.raises(DataError, match="not valid JSON"):
    speech.read_manifest(str(out))


def test_speech_demo_needs_espeak(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))
  with pytest.raises(DataError, match="apt-get install espeak-ng"):
    speech_demo.prepare_speech_demo(str(tmp_path), progress=False, limit=1)


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng is not installed")
def test_speech_demo(tmp_path):
  path = speech_demo.prepare_speech_demo(str(tmp_path), progress=False,
                                         limit=1)
  manifest = speech.read_manifest(path)
  assert manifest["sample_rate"] == 16000 and manifest["frame_size"] == 200
  assert manifest["layout"] == "folders" and manifest["skipped"] == []
  assert manifest["source"].startswith("espeak-ng")
  voices = len(speech_demo.VOICES)
  sentences = {}
  for split, entry in manifest["splits"].items():
    assert entry["num_sequences"] == voices
    # Around two seconds of speech each, at 80 frames per second.
    assert all(80 < n < 400 for n in entry["lengths"])
    sentences[split] = {os.path.basename(f) for f in entry["files"]}
  # Split by sentence: valid and test sentences are unseen in training.
  assert sentences == {"train": {"s000.wav"}, "valid": {"s007.wav"},
                       "test": {"s008.wav"}}
  assert 0.02 < manifest["std"] < 0.5
  # Cached: the second call reuses the folder.
  mtime = os.stat(os.path.join(path, "manifest.json")).st_mtime_ns
  assert speech_demo.prepare_speech_demo(str(tmp_path), progress=False,
                                         limit=1) == path
  assert os.stat(os.path.join(path, "manifest.json")).st_mtime_ns == mtime
  assert sorted(os.listdir(tmp_path)) == ["speech-demo-first1"]
