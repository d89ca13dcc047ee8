"""Run directories you can trust: the cases of a hostile new user.

Each test names the case it covers ("case N" of the reliability issue): the
command, its exit status, its one message, and that nothing is lost. One
small run is trained once per module and copied for each test.
"""

import contextlib
import json
import os
import pickle
import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from seqlvm import cli
from seqlvm.run import rundir
from seqlvm import errors
from seqlvm.run import factory
from seqlvm.run import training
from seqlvm.config import Config
from seqlvm.data.prepare import from_audio
from seqlvm.data import load_pianoroll
from seqlvm.data.prepare import from_midi
from tests.conftest import write_tiny_pianorolls

SMALL = ["--hidden-size", "8", "--latent-size", "4", "--no-jit",
         "--no-progress", "--valid-every", "0"]


def _train(data, run_dir, *extra):
  return cli.main(["train", "--data", str(data), "--run-dir", str(run_dir)] +
                  SMALL + list(extra))


def _ckpts(run_dir):
  return [rundir.checkpoint_number(p) for p in
          rundir.checkpoint_files(os.path.join(run_dir, "ckpt"))]


@pytest.fixture(scope="module", name="trained")
def _trained(tmp_path_factory):
  """A run trained for 4 steps on tiny.pkl, given by a relative path.

  Its batch of 13 exceeds the 12 training sequences, but not the 15 pieces
  of at most 16 steps that --max-length 16 cuts them into (case 10).
  """
  root = tmp_path_factory.mktemp("trained")
  write_tiny_pianorolls(root / "tiny.pkl")
  with _cwd(root):
    assert _train("tiny.pkl", "run", "--num-steps", "4",
                  "--checkpoint-every", "2", "--batch-size", "13",
                  "--max-length", "16") == 0
  return root


@pytest.fixture(name="run")
def _run(trained, tmp_path):
  """A copy of the trained run and its data, and the data's path."""
  shutil.copy(trained / "tiny.pkl", tmp_path / "tiny.pkl")
  shutil.copytree(trained / "run", tmp_path / "run")
  config = tmp_path / "run" / "config.json"
  values = json.loads(config.read_text())
  values["data"] = str(tmp_path / "tiny.pkl")  # the copy's data
  config.write_text(json.dumps(values))
  record = tmp_path / "run" / "data.json"
  values = json.loads(record.read_text())
  values["data"] = values["path"] = str(tmp_path / "tiny.pkl")
  record.write_text(json.dumps(values))
  return tmp_path / "run"


@contextlib.contextmanager
def _cwd(path):
  old = os.getcwd()
  os.chdir(path)
  try:
    yield
  finally:
    os.chdir(old)


@contextlib.contextmanager
def _read_only(path):
  """Makes the folder `path` read-only, also for root (who ignores mode
  bits): with `chattr +i` there, chmod elsewhere."""
  path = str(path)
  if os.geteuid() == 0:
    done = subprocess.run(["chattr", "+i", path], capture_output=True,
                          check=False)
    if done.returncode != 0:
      pytest.skip(f"cannot make {path} read-only as root: "
                  f"{done.stderr.decode().strip()}")
    undo = ["chattr", "-i", path]
  else:
    os.chmod(path, 0o555)
    undo = ["chmod", "755", path]
  try:
    yield
  finally:
    subprocess.run(undo, check=True)


def _no_traceback(err):
  assert "Traceback" not in err and "WARNING:tensorflow" not in err, err


# Case 1: eval and sample check the data; a relative --data is stored so
# that it works from any folder.
def test_eval_uses_the_runs_own_data_from_any_folder_and_refuses_other_data(
    trained, run, tmp_path, capsys):
  stored = json.loads((trained / "run" / "config.json").read_text())
  assert stored["data"] == str(trained / "tiny.pkl")  # absolute
  record = json.loads((trained / "run" / "data.json").read_text())
  assert record["path"] == str(trained / "tiny.pkl")
  assert len(record["fingerprint"]) == 64
  # Another tiny.pkl in the current folder is not the run's data.
  other = tmp_path / "elsewhere"
  other.mkdir()
  write_tiny_pianorolls(other / "tiny.pkl", seed=5,
                        sizes=(("train", 12), ("valid", 4), ("test", 4)))
  expected = sum(len(r) for r in load_pianoroll(str(tmp_path /
                                                    "tiny.pkl")).test)
  for folder in (other, "/"):
    with _cwd(folder):
      assert cli.main(["eval", str(run), "--no-progress", "--bounds",
                       "elbo"]) == 0
    out = capsys.readouterr().out
    assert f"{expected} steps" in out, out
  # The run's data itself changed: eval and sample refuse it, naming both.
  shutil.copy(other / "tiny.pkl", tmp_path / "tiny.pkl")
  shutil.rmtree(run / "eval")
  for command in (["eval", str(run), "--no-progress"],
                  ["sample", str(run), "--no-progress"]):
    assert cli.main(command) == 2
    err = capsys.readouterr().err
    assert "data.json" in err and "The data changed" in err, err
    assert str(tmp_path / "tiny.pkl") in err and "fingerprint" in err
    _no_traceback(err)
  assert not (run / "eval").exists()
  assert not (run / "samples").exists()


# Case 2: a failed write is one message with exit status 2, and eval prints
# its results before it tries to save them.
def test_write_failures_are_one_message(run, tmp_path, capsys):
  with _read_only(run):
    assert cli.main(["eval", str(run), "--no-progress", "--bounds",
                     "elbo"]) == 2
    captured = capsys.readouterr()
    assert "elbo" in captured.out and "nats/timestep" in captured.out
    assert re.search(re.escape(str(run / "eval")) +
                     r"\S*: cannot make the folder", captured.err)
    assert "The results above were not all saved" in captured.err
    _no_traceback(captured.err)
    assert cli.main(["sample", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'samples'}: cannot make the samples folder" in err, err
    _no_traceback(err)
    assert _train(tmp_path / "tiny.pkl", run, "--num-steps", "6") == 2
    err = capsys.readouterr().err
    assert f"{run}: cannot write to the run directory" in err, err
    _no_traceback(err)
  assert _ckpts(run) == [2, 4]  # nothing lost
  parent = tmp_path / "locked"
  parent.mkdir()
  with _read_only(parent):
    assert _train(tmp_path / "tiny.pkl", parent / "new", "--num-steps",
                  "1") == 2
    err = capsys.readouterr().err
    assert f"{parent / 'new'}: cannot make the run directory" in err, err
    _no_traceback(err)
  not_a_folder = tmp_path / "file.txt"
  not_a_folder.write_text("mine")
  assert cli.main(["sample", str(run), "--out", str(not_a_folder),
                   "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert f"{not_a_folder}: cannot write the samples folder here: a file" in (
      err), err
  _no_traceback(err)
  assert not_a_folder.read_text() == "mine"


# Case 3: an incomplete config is refused at once; a garbage one too.
def test_incomplete_or_garbage_config_is_refused(run, capsys):
  (run / "config.json").write_text("{}")
  assert cli.main(["eval", str(run), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert f"{run / 'config.json'}: incomplete config" in err
  assert "batch_size" in err and "hidden_size" in err
  _no_traceback(err)
  (run / "config.json").write_text('{"data": "x", ')
  assert cli.main(["eval", str(run), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "unreadable config" in err
  _no_traceback(err)
  values = Config().to_dict()
  values["num_particles"] = "four"
  (run / "config.json").write_text(json.dumps(values))
  assert cli.main(["sample", str(run), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert f"{run / 'config.json'}: Invalid configuration" in err
  assert "num_particles must be int" in err


def test_configs_of_older_versions_still_load(tmp_path):
  values = Config().to_dict()
  for name in ("latent", "categories", "latent_temperature",
               "wavenet_channels", "wavenet_layers", "soft_mixing",
               "resampling_temperature", "max_length"):
    del values[name]  # fields that came after the first config format
  (tmp_path / "config.json").write_text(json.dumps(values))
  from seqlvm.config import load_config  # pylint: disable=g-import-not-at-top
  assert load_config(str(tmp_path / "config.json")) == Config()


# Case 4: one writer per run directory.
def test_a_second_training_of_the_same_run_is_refused(run, tmp_path, capsys):
  with rundir.RunLock(run):
    holder = json.loads((run / "lock").read_text())
    assert holder["pid"] == os.getpid()
    assert _train(tmp_path / "tiny.pkl", run, "--num-steps", "6") == 2
    err = capsys.readouterr().err
    assert f"this run is being trained by pid {os.getpid()}" in err, err
    assert holder["host"] in err and "one writer" in err
    _no_traceback(err)
  assert not (run / "lock").exists()  # released
  assert _ckpts(run) == [2, 4]


# Case 5: nothing to train is said, and an impossible budget refused.
def test_zero_steps_past_the_end_and_negative_budgets(run, tmp_path, capsys):
  data = tmp_path / "tiny.pkl"
  assert _train(data, tmp_path / "new", "--num-steps", "0") == 2
  assert "num_steps must be >= 1" in capsys.readouterr().err
  assert not (tmp_path / "new").exists()
  assert _train(data, run, "--num-steps", "4") == 0
  captured = capsys.readouterr()
  assert "Nothing trained: the run is at step 4" in captured.out
  assert "nan" not in captured.out and "nothing to train" in captured.err
  assert _train(data, run, "--num-steps", "3") == 2
  err = capsys.readouterr().err
  assert "at step 4, past --num-steps 3" in err
  _no_traceback(err)
  assert _train(data, run, "--num-steps", "6", "--max-minutes", "-1") == 2
  err = capsys.readouterr().err
  assert "--max-minutes) must be positive" in err
  assert _ckpts(run) == [2, 4]
  assert cli.main(["sample", str(run), "--max-minutes", "0"]) == 2
  assert "must be positive" in capsys.readouterr().err


# Case 6: a sequence with no timesteps is an error naming file, split, index.
def test_a_zero_length_sequence_is_named(tmp_path, capsys):
  path = write_tiny_pianorolls(tmp_path / "tiny.pkl")
  with open(path, "rb") as f:
    splits = pickle.load(f)
  splits["test"].insert(2, [])
  with open(path, "wb") as f:
    pickle.dump(splits, f)
  assert _train(path, tmp_path / "r", "--num-steps", "1") == 2
  err = capsys.readouterr().err
  assert f"{path}: split 'test', sequence 2: it has no timesteps" in err
  _no_traceback(err)
  assert not (tmp_path / "r").exists()  # refused before writing anything
  from seqlvm.data import sources  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="mine: split 'valid', sequence 1 "
                     "has no timesteps"):
    sources.InMemorySource({"train": [np.ones([3, 2])], "valid": [
        np.ones([2, 2]), np.ones([0, 2])]}, name="mine")


# Case 7 (and a lost index): every checkpoint counts against the limit.
def test_keep_checkpoints_after_the_index_was_lost(run, tmp_path, capsys):
  assert _ckpts(run) == [2, 4]
  os.remove(run / "ckpt" / "checkpoint")
  capsys.readouterr()
  assert _train(tmp_path / "tiny.pkl", run, "--num-steps", "8",
                "--checkpoint-every", "2", "--keep-checkpoints", "2") == 0
  err = capsys.readouterr().err
  assert "missing or unreadable" in err and "ckpt-2, ckpt-4" in err, err
  assert "from" in err and "at step 4" in err
  assert _ckpts(run) == [6, 8]  # not [2, 4, 6, 8]


class _AllNaN:
  """Every training sequence is NaN: every batch is skipped."""

  def __init__(self, rolls):
    self.train = [np.full_like(r, np.nan) for r in rolls.train]
    self.valid, self.test = rolls.valid, rolls.test
    self.train_mean = rolls.train_mean


# Case 8: skipped batches write no checkpoints, and the message says what
# the last good state is.
def test_skipped_batches_write_no_checkpoints(tmp_path):
  path = write_tiny_pianorolls(tmp_path / "tiny.pkl")

  def make(config):
    rolls = load_pianoroll(path)
    return _AllNaN(rolls), factory.build_model(config, 88, rolls.train_mean)

  config = Config(data=path, hidden_size=8, latent_size=4, batch_size=2,
                  num_steps=30, checkpoint_every=1, valid_every=0,
                  jit_compile=False, on_nonfinite="skip")
  run_dir = str(tmp_path / "run")
  with pytest.raises(errors.TrainingError) as info:
    training.train(config, run_dir, make_dataset_and_model=make,
                  progress=False, log=lambda m: None)
  message = str(info.value)
  assert "20 consecutive non-finite batches (steps 1 to 20)" in message
  assert "no update was applied; the initial state is saved in" in message
  assert _ckpts(run_dir) == [1]  # the initial state, once


# Case 9: sampling removes what an earlier call wrote, and long sampling
# shows progress and stops at its budget.
def test_sampling_leaves_no_stale_files_and_has_a_budget(run, tmp_path,
                                                         capsys):
  samples = run / "samples"
  assert cli.main(["sample", str(run), "--num", "3", "--steps", "8",
                   "--audio", "--no-progress"]) == 0
  assert (samples / "sample_02.wav").exists()
  assert cli.main(["sample", str(run), "--num", "1", "--steps", "8",
                   "--no-progress"]) == 0
  assert sorted(os.listdir(samples)) == [
      "sample_00.mid", "sample_00.png", "samples.json", "samples.npz",
      "samples.png"]
  assert json.loads((samples / "samples.json").read_text())["num"] == 1
  # In a folder of one's own, only what sample wrote is removed.
  mine = tmp_path / "mine"
  mine.mkdir()
  (mine / "notes.txt").write_text("keep")
  (mine / "sample_07.mid").write_text("not ours")
  for num in ("2", "1"):
    assert cli.main(["sample", str(run), "--num", num, "--steps", "8",
                     "--out", str(mine), "--no-progress"]) == 0
  assert sorted(os.listdir(mine)) == [
      "notes.txt", "sample_00.mid", "sample_00.png", "sample_07.mid",
      "samples.json", "samples.npz", "samples.png"]
  capsys.readouterr()
  assert cli.main(["sample", str(run), "--num", "1", "--steps", "100000",
                   "--max-minutes", "0.03", "--out",
                   str(tmp_path / "long")]) == 2
  err = capsys.readouterr().err
  assert "sampling 100000 steps would take about" in err, err
  assert "Nothing was written" in err and "sample:" in err  # the bar
  assert os.listdir(tmp_path / "long") == []


# Case 10: flags that do nothing are said so, a batch larger than the data
# is refused.
def test_ignored_flags_are_warned_and_oversized_batches_refused(
    trained, tmp_path, capsys):
  data = write_tiny_pianorolls(tmp_path / "tiny.pkl")
  assert _train(data, tmp_path / "r", "--num-steps", "1", "--bound", "iwae",
                "--resampling", "always", "--categories", "3",
                "--batch-size", "13") == 2
  err = capsys.readouterr().err
  assert ("--resampling always has no effect here: it applies to --bound "
          "fivo only") in err
  assert "--categories 3 has no effect here: it applies to --latent " in err
  assert (f"{data}: --batch-size 13 is larger than the training split (12 "
          "sequences)") in err
  _no_traceback(err)
  assert not (tmp_path / "r").exists()
  # With --max-length 16 the 12 sequences give 15 pieces: the fixture's run
  # trained with a batch of 13.
  trained_config = json.loads((trained / "run" / "config.json").read_text())
  assert (trained_config["batch_size"], trained_config["max_length"]) == (
      13, 16)
  lengths = [len(r) for r in load_pianoroll(str(trained / "tiny.pkl")).train]
  assert len(lengths) == 12 and sum(-(-n // 16) for n in lengths) == 15


# Case 11: messages that name the file.
def test_midi_and_data_messages_name_the_files(tmp_path, capsys):
  one = tmp_path / "one"
  one.mkdir()
  (one / "song.mid").write_text("not MIDI at all")
  assert cli.main(["data", "from-midi", str(one), "--out", str(
      tmp_path / "x.pkl"), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert str(one / "song.mid") in err and "not readable MIDI" in err, err
  assert "split 'valid' would get no files" in err
  others = tmp_path / "others"
  others.mkdir()
  (others / "a.txt").write_text("x")
  (others / "b.wav").write_bytes(b"RIFF")
  assert cli.main(["data", "from-midi", str(others), "--out", str(
      tmp_path / "x.pkl"), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "2 other file(s): a.txt, b.wav" in err, err
  folder = tmp_path / "plain"
  folder.mkdir()
  assert _train(folder, tmp_path / "r", "--num-steps", "1") == 2
  err = capsys.readouterr().err
  assert "seqlvm data from-audio DIR --out NAME" in err, err
  assert not (tmp_path / "x.pkl").exists()


# Case 12: a small TIMIT-layout tree gets a valid split.
def test_a_small_timit_tree_gets_one_valid_utterance(tmp_path):
  rng = np.random.RandomState(0)
  for top, count in (("TRAIN", 16), ("TEST", 4)):
    for i in range(count):
      path = tmp_path / "timit" / top / "DR1" / f"S{i % 4}" / f"SX{i}.WAV"
      path.parent.mkdir(parents=True, exist_ok=True)
      soundfile.write(path, (rng.randn(800) * 0.1).clip(-1, 1), 8000,
                      format="NIST", subtype="PCM_16")
  manifest = from_audio.from_audio(str(tmp_path / "timit"), str(tmp_path / "out"),
                              frame_size=40, progress=False,
                              log=lambda m: None)
  sizes = {s: manifest["splits"][s]["num_sequences"] for s in manifest[
      "splits"]}
  assert sizes == {"train": 15, "valid": 1, "test": 4}
  two = from_audio.timit_split(["TRAIN/D/S/SX1.WAV", "TRAIN/D/S/SX2.WAV",
                            "TEST/D/S/SX3.WAV"])
  assert len(two["valid"]) == 1 and len(two["train"]) == 1
  one = from_audio.timit_split(["TRAIN/D/S/SX1.WAV", "TEST/D/S/SX3.WAV"])
  assert not one["valid"] and len(one["train"]) == 1


# Regression: fetching from a wrong file refuses it and keeps the good one.
def test_fetch_from_a_wrong_file_keeps_the_good_one(tmp_path, capsys):
  directory = tmp_path / "d"
  directory.mkdir()
  good = directory / "jsb.pkl"
  good.write_bytes(b"the good copy")
  wrong = write_tiny_pianorolls(tmp_path / "wrong.pkl")
  assert cli.main(["data", "fetch", "jsb", "--from", wrong, "--dir",
                   str(directory), "--force", "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert wrong in err and "split sizes" in err
  _no_traceback(err)
  assert good.read_bytes() == b"the good copy"
  assert os.listdir(directory) == ["jsb.pkl"]


# Regression: a NaN at a huge learning rate is caught, named, not applied.
def test_a_huge_learning_rate_stops_with_the_last_good_state(tmp_path,
                                                             capsys):
  data = write_tiny_pianorolls(tmp_path / "tiny.pkl")
  run_dir = tmp_path / "run"
  assert _train(data, run_dir, "--num-steps", "40", "--checkpoint-every",
                "5", "--learning-rate", "1000") == 2
  err = capsys.readouterr().err
  found = re.search(r"non-finite fivo bound .* at step (\d+)\. The update "
                    r"was not applied; the last good state \(after the "
                    r"update of step (\d+)\) is saved in (\S+)\.", err)
  assert found, err
  assert int(found.group(2)) == int(found.group(1)) - 1
  reader = tf.train.load_checkpoint(found.group(3))
  assert all(np.all(np.isfinite(reader.get_tensor(k))) for k in
             reader.get_variable_to_shape_map() if k.startswith("model/"))
  _no_traceback(err)
