"""Damaged or changed data: one clear message naming it, and no lost work."""

import json
import os

import numpy as np
import pytest

from seqlvm import cli
from seqlvm import data
from seqlvm.run import evaluation
from seqlvm.run import factory
from seqlvm.run import training
from seqlvm.config import Config
from seqlvm.config import ConfigError
from seqlvm.data.prepare import from_audio
from seqlvm.data.formats import speech
from seqlvm.data import sources
from tests.conftest import FRAME
from tests.conftest import write_corpus

SMALL = ["--hidden-size", "8", "--latent-size", "4", "--batch-size", "2",
         "--no-jit", "--no-progress"]


@pytest.fixture(name="prepared")
def _prepared(tmp_path):
  corpus = write_corpus(tmp_path / "corpus", (("train", 8, 0),
                                              ("valid", 3, 1), ("test", 3, 2)))
  out = tmp_path / "prepared"
  from_audio.from_audio(str(corpus), str(out), frame_size=FRAME, progress=False,
                   log=lambda m: None)
  return out


def _corrupt(path):
  raw = bytearray(path.read_bytes())
  raw[len(raw) // 2] ^= 0xFF
  path.write_bytes(bytes(raw))


def test_a_damaged_shard_is_named_and_training_keeps_its_work(
    prepared, tmp_path, capsys):
  run_dir = tmp_path / "run"
  args = ["train", "--data", str(prepared), "--run-dir", str(run_dir),
          "--valid-every", "0", "--checkpoint-every", "100"] + SMALL
  assert cli.main(args + ["--num-steps", "2"]) == 0
  _corrupt(prepared / "test-00000.tfrecord")
  assert cli.main(["eval", str(run_dir), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert str(prepared) in err and "'test' split failed" in err
  assert "Traceback" not in err
  _corrupt(prepared / "train-00000.tfrecord")
  assert cli.main(args + ["--num-steps", "40"]) == 2
  err = capsys.readouterr().err
  assert "reading the training data at step" in err and str(prepared) in err
  assert "Traceback" not in err
  # The steps trained before the damaged record are saved.
  saved = [f for f in os.listdir(run_dir / "ckpt") if f.endswith(".index")]
  assert max(int(f[len("ckpt-"):-len(".index")]) for f in saved) >= 2


def test_manifest_that_disagrees_with_its_shards(prepared, tmp_path,
                                                 capsys):
  manifest_path = prepared / "manifest.json"
  manifest = json.loads(manifest_path.read_text())
  manifest["frame_size"] = FRAME + 7  # does not divide the records
  manifest_path.write_text(json.dumps(manifest))
  source = data.open_source(str(prepared))
  config = Config(data="x", hidden_size=4, latent_size=2, batch_size=2,
                  emission="gaussian")
  model = factory.build_model(config, source.data_size, source.train_mean)
  evaluator = evaluation.Evaluator(model, config, source.data_size)
  with pytest.raises(data.DataError, match=f"{prepared}: reading the 'valid' "
                     "split failed \\(a record's length is not a multiple "
                     f"of the manifest's frame_size {FRAME + 7}\\)"):
    evaluator(source, "valid", "elbo", 1, 2)
  for key, value in (("std", 0.), ("frame_size", 0), ("mean", "x")):
    broken = dict(manifest, **{key: value})
    manifest_path.write_text(json.dumps(broken))
    with pytest.raises(data.DataError, match=f"{manifest_path}: {key}"):
      speech.read_manifest(str(prepared))
  del capsys, tmp_path


def test_bernoulli_emission_on_speech_is_refused(prepared, tmp_path, capsys):
  assert cli.main(["train", "--data", str(prepared), "--run-dir",
                   str(tmp_path / "r"), "--emission", "bernoulli",
                   "--num-steps", "1"] + SMALL) == 2
  err = capsys.readouterr().err
  assert "Bernoulli emission needs binary data" in err
  assert "Traceback" not in err


def test_resuming_on_changed_data_is_refused(tiny_pianorolls, tmp_path,
                                             capsys):
  run_dir = tmp_path / "run"
  args = ["train", "--data", tiny_pianorolls, "--run-dir", str(run_dir),
          "--valid-every", "0"] + SMALL
  assert cli.main(args + ["--num-steps", "2"]) == 0
  stored = json.loads((run_dir / "data.json").read_text())
  assert len(stored["fingerprint"]) == 64
  rolls = data.load_pianoroll(tiny_pianorolls)
  data.save_pianoroll({s: [data.roll_to_notes(r) for r in rolls.split(s)[1:]]
                       for s in data.SPLITS}, tiny_pianorolls)
  assert cli.main(args + ["--num-steps", "4"]) == 2
  err = capsys.readouterr().err
  assert "data.json" in err and "The data changed" in err


class _OtherPipeline(sources.InMemorySource):
  """The same data behind a differently built input pipeline."""

  pipeline_id = "other/1"

  def __init__(self, source):
    super().__init__(source.splits, train_mean=source.train_mean,
                     name=source.name)

  def train_dataset(self, *args, **kwargs):
    return super().train_dataset(*args, **kwargs).map(
        lambda x, n: (x + 0., n))


def test_checkpoint_of_another_input_pipeline_keeps_the_model(
    tiny_pianorolls, tmp_path):
  config = Config(data=tiny_pianorolls, hidden_size=8, latent_size=4,
                  batch_size=2, num_steps=2, valid_every=0,
                  jit_compile=False)

  def other(config):
    source, model = factory.make_dataset_and_model(config)
    return _OtherPipeline(source), model

  run_dir = str(tmp_path / "run")
  training.train(config, run_dir, make_dataset_and_model=other,
                progress=False, log=lambda m: None)
  messages = []
  result = training.train(config.replace(num_steps=4), run_dir,
                         progress=False, log=messages.append)
  assert result.step == 4
  assert any("starts afresh" in m for m in messages), messages


def test_padding_rows_of_an_evaluation_batch_add_nothing():
  # One real sequence in a batch of 4: three rows of empty padding.
  source = sources.InMemorySource({"train": [np.ones([4, 3], np.float32)],
                                   "test": [np.ones([5, 3], np.float32)]})
  batches = list(source.eval_dataset("test", batch_size=4))
  assert len(batches) == 1
  _, lengths, index = batches[0]
  assert lengths.numpy().tolist() == [5, 0, 0, 0]
  assert index.numpy().tolist() == [0, -1, -1, -1]
  config = Config(data="x", hidden_size=4, latent_size=2, batch_size=4,
                  emission="gaussian")
  model = factory.build_model(config, 3, np.zeros(3))
  evaluator = evaluation.Evaluator(model, config, 3)
  result = evaluator(source, "test", "fivo", 2, 4)
  assert len(result.values) == 1 and np.isfinite(result.per_sequence)
  assert result.lengths.tolist() == [5] and result.indices.tolist() == [0]
  np.testing.assert_allclose(result.per_timestep * 5, result.per_sequence,
                             rtol=1e-6)


def test_output_names_and_paths(tmp_path, monkeypatch, prepared, capsys):
  monkeypatch.setenv("SEQLVM_DATA_DIR", str(tmp_path / "data" / "dir"))
  precious = tmp_path / "area" / "precious.txt"
  (tmp_path / "area" / "sub").mkdir(parents=True)
  precious.write_text("keep me")
  corpus = tmp_path / "corpus"
  # ".." is a path, not a name: here it names the folder "area", which is
  # not a prepared set, so even --force refuses to replace it.
  monkeypatch.chdir(tmp_path / "area" / "sub")
  assert cli.main(["data", "from-audio", str(corpus), "--out", "..",
                   "--force", "--frame-size", str(FRAME),
                   "--no-progress"]) == 2
  assert "not a prepared speech folder" in capsys.readouterr().err
  assert precious.read_text() == "keep me"
  # A bare name with .pkl lands in the data directory and resolves by name.
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  from seqlvm.data.formats import midi  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  for i in range(10):
    roll = (rng.rand(12, 88) < 0.05).astype(np.float32)
    roll[0, 40] = 1.
    midi.write_midi(roll, midi_dir / f"{i}.mid")
  assert cli.main(["data", "from-midi", str(midi_dir), "--out", "mine.pkl",
                   "--no-progress"]) == 0
  expected = tmp_path / "data" / "dir" / "mine.pkl"
  assert expected.exists()
  assert data.resolve("mine.pkl") == str(expected)
  assert data.resolve("mine") == str(expected)
  del prepared
