"""`seqlvm train --init-from`: a new run's model from another run's
checkpoint (`seqlvm.run.warmstart`)."""

import json
import os
import shutil

import numpy as np
import pytest

from seqlvm import cli
from seqlvm.run import rundir
from seqlvm.run import warmstart
from tests.conftest import write_tiny_pianorolls
from tests.run.test_training import _model_variables
from tests.run.test_training import _read_json
from tests.run.test_training import _train_args

COMMON = ["--no-jit", "--checkpoint-every", "2", "--valid-every", "2",
          "--num-particles", "2"]
# A warm start at a vanishing rate: its first update moves no variable
# measurably.
WARM = ["--bound", "fivo", "--learning-rate", "1e-12", *COMMON]


@pytest.fixture(scope="module")
def trained_source(tmp_path_factory):
  """An IWAE run of 4 steps (with best and newest checkpoints), trained once
  for the module; each test warm-starts from a copy (`_source`)."""
  base = tmp_path_factory.mktemp("source")
  data = write_tiny_pianorolls(base / "tiny.pkl")
  assert cli.main(_train_args(data, base / "iwae", "--bound", "iwae",
                              "--num-steps", "4", *COMMON)) == 0
  return base / "iwae"


def _source(trained_source, tmp_path):
  copy = tmp_path / "iwae"
  shutil.copytree(trained_source, copy)
  return copy


def test_init_from_warm_starts_a_new_run_from_another_runs_model(
    tiny_pianorolls, trained_source, tmp_path, capsys):
  common, warm = COMMON, WARM
  source = _source(trained_source, tmp_path)
  best = rundir.checkpoint_files(source / "best")[-1]
  assert rundir.checkpoint_number(best) > 0  # Trained: not the seed's init.
  # Warm-started at a vanishing rate, the new run's first update moves no
  # variable measurably: its step-1 model is the source's best, not the
  # fresh initialisation of the same seed.
  target = tmp_path / "fivo"
  capsys.readouterr()
  assert cli.main(_train_args(tiny_pianorolls, target, "--num-steps", "1",
                              "--init-from", str(source), *warm)) == 0
  err = capsys.readouterr().err
  assert f"Initialised the model from {best} (step " in err, err
  assert _read_json(target / "config.json")["init_from"] == best
  started = _model_variables(target / "ckpt" / "ckpt-1")
  original = _model_variables(best)
  assert started.keys() == original.keys() and len(started) > 20
  for k in started:
    np.testing.assert_allclose(started[k], original[k], rtol=0, atol=1e-9,
                               err_msg=k)
  # Resumed with the same flags, it restores its own state and keeps the
  # checkpoint it started from; without the flag too.
  for extra in (["--init-from", str(source)], []):
    steps = "2" if extra else "3"
    assert cli.main(_train_args(tiny_pianorolls, target, "--num-steps",
                                steps, *extra, *warm)) == 0
    err = capsys.readouterr().err
    assert "Resuming" in err and "Initialised" not in err, err
    assert _read_json(target / "config.json")["init_from"] == best
  # A checkpoint path names the checkpoint itself.
  at_2 = str(source / "ckpt" / "ckpt-2")
  assert cli.main(_train_args(tiny_pianorolls, tmp_path / "from2",
                              "--num-steps", "1", "--init-from", at_2,
                              *warm)) == 0
  assert _read_json(tmp_path / "from2" / "config.json")["init_from"] == at_2
  capsys.readouterr()

  # Refusals: one message each, and no run directory left behind.
  refused = [
      (["--init-from", str(tmp_path / "nowhere")],
       "not a run directory nor a checkpoint"),
      (["--init-from", str(tmp_path)], "no checkpoint there"),
      (["--init-from", str(source), "--hidden-size", "6"],
       "hidden_size 8 there, 6 here"),
      (["--init-from", str(source), "--emission", "gaussian"],
       "cannot initialise this run's model from it"),
  ]
  for extra, message in refused:
    bad = tmp_path / "bad"
    assert cli.main(_train_args(tiny_pianorolls, bad, "--num-steps", "1",
                                *warm, *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, (extra, err)
    assert not bad.exists(), extra
  # A run trained from scratch cannot be warm-started afterwards.
  assert cli.main(_train_args(tiny_pianorolls, source, "--bound", "iwae",
                              "--num-steps", "4", "--init-from", at_2,
                              *common)) == 2
  assert "trained from a fresh initialisation" in capsys.readouterr().err


def test_a_resumed_warm_start_needs_no_source_and_keeps_its_own(
    tiny_pianorolls, trained_source, tmp_path, capsys, monkeypatch):
  """A relative source is stored absolute; once the run has checkpoints,
  it resumes with its source moved away, and another source given is not
  used (a warning says so)."""
  _source(trained_source, tmp_path)
  monkeypatch.chdir(tmp_path)
  best = rundir.checkpoint_files(tmp_path / "iwae" / "best")[-1]
  assert cli.main(_train_args(tiny_pianorolls, "fivo", "--num-steps", "1",
                              "--init-from", "iwae", *WARM)) == 0
  assert _read_json(tmp_path / "fivo" / "config.json")["init_from"] == best
  shutil.move(tmp_path / "iwae", tmp_path / "moved")
  capsys.readouterr()
  assert cli.main(_train_args(tiny_pianorolls, "fivo", "--num-steps", "2",
                              "--init-from", "iwae", *WARM)) == 0
  err = capsys.readouterr().err
  assert "Resuming" in err and "Warning" not in err, err
  assert cli.main(_train_args(tiny_pianorolls, "fivo", "--num-steps", "3",
                              "--init-from", "moved", *WARM)) == 0
  err = capsys.readouterr().err
  assert "Warning: --init-from moved is not used" in err, err
  assert _read_json(tmp_path / "fivo" / "config.json")["init_from"] == best


def test_a_run_without_checkpoints_resolves_its_source_again(
    tiny_pianorolls, trained_source, tmp_path, capsys):
  """Until a warm-started run has a checkpoint, its source is read again at
  each start: a stored checkpoint that is gone is named, and giving the
  source again starts from what it holds now."""
  source = _source(trained_source, tmp_path)
  target = tmp_path / "fivo"
  assert cli.main(_train_args(tiny_pianorolls, target, "--num-steps", "1",
                              "--init-from", str(source), *WARM)) == 0
  for name in os.listdir(target):  # As if killed before its first save.
    if name not in ("config.json", "data.json"):
      path = target / name
      if path.is_dir():
        shutil.rmtree(path)
      else:
        path.unlink()
  config = _read_json(target / "config.json")
  gone = str(source / "best" / "ckpt-1")
  config["init_from"] = gone
  with open(target / "config.json", "w") as f:
    json.dump(config, f)
  capsys.readouterr()
  assert cli.main(_train_args(tiny_pianorolls, target, "--num-steps", "1",
                              *WARM)) == 2
  err = capsys.readouterr().err
  assert f"--init-from {gone}: not a run directory nor a checkpoint" in err
  assert "keeps only its newest" in err and "Traceback" not in err
  assert cli.main(_train_args(tiny_pianorolls, target, "--num-steps", "1",
                              "--init-from", str(source), *WARM)) == 0
  best = rundir.checkpoint_files(source / "best")[-1]
  assert f"Initialised the model from {best}" in capsys.readouterr().err
  assert _read_json(target / "config.json")["init_from"] == best


def test_sources_name_checkpoints_in_every_form(trained_source, tmp_path):
  source = _source(trained_source, tmp_path)
  best = rundir.checkpoint_files(source / "best")[-1]
  newest = rundir.checkpoint_files(source / "ckpt")[-1]
  for given, expected in ((source, best), (str(source) + "/", best),
                          (source / "best", best), (best + ".index", best),
                          (source / "ckpt", newest), (newest, newest)):
    assert warmstart.checkpoint_of(given) == (expected, str(source)), given
  outside = tmp_path / "bare"
  shutil.copytree(source / "ckpt", outside)
  assert warmstart.checkpoint_of(outside)[1] is None


def test_only_the_fields_a_model_uses_must_agree(tiny_pianorolls,
                                                 trained_source, tmp_path,
                                                 capsys):
  """A Gaussian VRNN's --categories (a concrete latent's) shapes nothing:
  a warm start may differ there, not in --latent-size."""
  source = _source(trained_source, tmp_path)
  assert cli.main(_train_args(tiny_pianorolls, tmp_path / "a", "--num-steps",
                              "1", "--init-from", str(source),
                              "--categories", "5", *WARM)) == 0
  capsys.readouterr()
  assert cli.main(_train_args(tiny_pianorolls, tmp_path / "b", "--num-steps",
                              "1", "--init-from", str(source),
                              "--latent-size", "3", *WARM)) == 2
  assert "latent_size 4 there, 3 here" in capsys.readouterr().err
