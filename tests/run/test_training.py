"""Training, resuming, evaluation and sampling from run directories."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from seqlvm import cli
from seqlvm.run import rundir
from seqlvm import errors
from seqlvm.run import factory
from seqlvm.run import training
from seqlvm.config import Config
from seqlvm.config import ConfigError
from seqlvm.data import DataError
from seqlvm.data import load_pianoroll
from tests.conftest import REPO
from tests.conftest import eval_records

SMALL = ["--hidden-size", "8", "--latent-size", "4", "--pad-to-multiple",
         "32", "--no-progress"]


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _train_args(data, run_dir, *extra):
  return ["train", "--data", data, "--run-dir", str(run_dir)] + SMALL + list(
      extra)


def test_cli_train_eval_sample_end_to_end(tiny_pianorolls, tmp_path, capsys):
  run_dir = tmp_path / "run"
  # The default path: XLA-compiled training and evaluation.
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "4",
                              "--checkpoint-every", "2", "--valid-every",
                              "2")) == 0
  out = capsys.readouterr().out
  assert "Trained to step 4" in out and "ckpt-4" in out
  assert _read_json(run_dir / "config.json")["hidden_size"] == 8
  assert glob.glob(str(run_dir / "train" / "events.out.tfevents.*"))
  assert glob.glob(str(run_dir / "valid" / "events.out.tfevents.*"))

  assert cli.main(["eval", str(run_dir), "--split", "test", "--num-particles",
                   "3", "--no-progress"]) == 0
  out = capsys.readouterr().out
  assert re.search(r"fivo\s+3\s+-\d+\.\d+", out)
  results = eval_records(run_dir, "test", 3)
  rolls = load_pianoroll(tiny_pianorolls)
  assert results["num_timesteps"] == sum(len(r) for r in rolls.test)
  for name in ("elbo", "iwae", "fivo"):
    r = results[name]
    assert r["ll_per_t"] < 0 and np.isfinite(r["ll_per_seq"])
    np.testing.assert_allclose(
        r["ll_per_seq"] * len(rolls.test) / results["num_timesteps"],
        r["ll_per_t"], rtol=1e-6)

  out_dir = tmp_path / "samples"
  assert cli.main(["sample", str(run_dir), "--num", "2", "--steps", "16",
                   "--out", str(out_dir), "--audio"]) == 0
  import mido  # pylint: disable=g-import-not-at-top
  import soundfile  # pylint: disable=g-import-not-at-top
  for i in range(2):
    midi = mido.MidiFile(out_dir / f"sample_{i:02d}.mid")
    assert midi.length > 0 or len(midi.tracks[0]) >= 3
    png = out_dir / f"sample_{i:02d}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wav, rate = soundfile.read(out_dir / f"sample_{i:02d}.wav")
    assert rate == 22050 and len(wav) == round(16 * 0.6 * 22050)
  assert (out_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert np.load(out_dir / "samples.npz")["x"].shape == (2, 16, 88)


def _latest_checkpoint_number(run_dir):
  state = tf.train.get_checkpoint_state(os.path.join(run_dir, "ckpt"))
  if state is None or not state.model_checkpoint_path:
    return 0
  return int(state.model_checkpoint_path.rsplit("-", 1)[1])


def _variables(run_dir):
  path = tf.train.latest_checkpoint(os.path.join(run_dir, "ckpt"))
  reader = tf.train.load_checkpoint(path)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def test_resume_after_sigkill_continues_exactly(tiny_pianorolls, tmp_path):
  # Under a KL warm-up over 12 of the 16 steps: the resumed run must also
  # continue its annealing weight where it stopped.
  common = ["--no-jit", "--checkpoint-every", "2", "--valid-every", "4",
            "--valid-variance-sweeps", "0", "--valid-samples", "0",
            "--kl-warmup-steps", "12", "--kl-weight-start", "0.2"]
  # Reference: an uninterrupted run of 16 steps.
  reference = tmp_path / "reference"
  assert cli.main(_train_args(tiny_pianorolls, reference, "--num-steps", "16",
                              *common)) == 0
  # The same run, killed with SIGKILL after a few checkpoints.
  killed = tmp_path / "killed"
  command = [sys.executable, "-m", "seqlvm.cli"] + _train_args(
      tiny_pianorolls, killed, "--num-steps", "100000", *common)
  log_path = tmp_path / "killed.log"
  with open(log_path, "wb") as log_file, subprocess.Popen(
      command, cwd=REPO, stdout=subprocess.DEVNULL,
      stderr=log_file) as process:
    deadline = time.time() + 120
    while _latest_checkpoint_number(killed) < 4 and time.time() < deadline:
      assert process.poll() is None, log_path.read_text()[-2000:]
      time.sleep(0.05)
    # While it trains, a second training of the same run is refused.
    with pytest.raises(rundir.RunLockedError,
                       match=f"being trained by pid {process.pid} on host"):
      training.train(Config.from_dict(_read_json(killed / "config.json")),
                    str(killed), progress=False, log=lambda m: None)
    process.send_signal(signal.SIGKILL)
    process.wait()
  stopped_at = _latest_checkpoint_number(killed)
  assert 4 <= stopped_at < 16
  messages = []
  result = training.train(
      Config.from_dict(_read_json(killed / "config.json")).replace(
          num_steps=16),
      str(killed), progress=False, log=messages.append)
  # The killed process left its lock file behind: stale, taken over.
  assert any(f"took over a stale lock of pid {process.pid}" in m
             for m in messages), messages
  assert not (killed / "lock").exists()
  assert any(f"at step {stopped_at}" in m for m in messages), messages
  assert result.step == 16
  # Same data order, same seeds: the resumed run ends where the reference did.
  ref, res = _variables(reference), _variables(killed)
  assert ref.keys() == res.keys() and len(ref) > 20
  for k in ref:
    np.testing.assert_allclose(res[k], ref[k], rtol=1e-5, atol=1e-6,
                               err_msg=k)
  # The best validation survived the kill: the same history, the same best
  # step and its checkpoint, as in the uninterrupted run.
  best_ref = _read_json(reference / "best.json")
  best_res = _read_json(killed / "best.json")
  assert [s for s, _ in best_res["validations"]] == [4, 8, 12, 16]
  np.testing.assert_allclose([v for _, v in best_res["validations"]],
                             [v for _, v in best_ref["validations"]],
                             rtol=1e-5)
  assert best_res["step"] == best_ref["step"]
  assert best_res["checkpoint"] == f"best/ckpt-{best_ref['step']}"
  assert os.path.exists(killed / (best_res["checkpoint"] + ".index"))


def test_half_written_or_corrupt_checkpoints_never_replace_good_ones(
    tiny_pianorolls, tmp_path, capsys):
  run_dir = tmp_path / "run"
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "6",
                              "--checkpoint-every", "2", "--no-jit")) == 0
  ckpt = run_dir / "ckpt"
  # A save killed half-way leaves files that the index never names.
  (ckpt / "ckpt-8.index").write_bytes(b"\x00garbage")
  (ckpt / "ckpt-8.data-00000-of-00001").write_bytes(b"\x00" * 10)
  messages = []
  config = Config.from_dict(_read_json(run_dir / "config.json"))
  training.train(config.replace(num_steps=6), str(run_dir), progress=False,
                log=messages.append)
  assert not any("Resuming" in m and "ckpt-8" in m for m in messages)
  # A lost or damaged index: the checkpoint files themselves are tried.
  (ckpt / "checkpoint").write_text("garbage {{{")
  messages = []
  training.train(config.replace(num_steps=6), str(run_dir), progress=False,
                log=messages.append)
  assert any("missing or unreadable" in m for m in messages), messages
  assert any("Resuming" in m and "at step 6" in m for m in messages)
  # The newest named checkpoint is corrupt: it is reported, the older used.
  data_file = ckpt / "ckpt-6.data-00000-of-00001"
  data_file.write_bytes(data_file.read_bytes()[:50])
  capsys.readouterr()
  latest = ["--checkpoint", "latest"]
  assert cli.main(["eval", str(run_dir), "--no-progress", "--bounds",
                   "elbo"] + latest) == 0
  err = capsys.readouterr().err
  assert "ckpt-6" in err and "could not be restored" in err
  assert "ckpt-4" in err
  # Every checkpoint corrupt: a clear error naming them, exit status 2.
  for f in ckpt.glob("ckpt-*.data-*"):
    f.write_bytes(b"")
  assert cli.main(["eval", str(run_dir), "--no-progress"] + latest) == 2
  err = capsys.readouterr().err
  assert "No checkpoint could be restored" in err and "ckpt-2" in err
  assert "Traceback" not in err


class _NaNData:
  def __init__(self, rolls):
    self.train = rolls.train[:3] + [np.full_like(rolls.train[3], np.nan)]
    self.valid = rolls.valid
    self.test = rolls.test
    self.train_mean = rolls.train_mean


def _nan_factory(path):
  def make(config):
    rolls = load_pianoroll(path)
    return _NaNData(rolls), factory.build_model(config, 88, rolls.train_mean)
  return make


def test_non_finite_bound_stops_with_the_step_named(tiny_pianorolls,
                                                    tmp_path):
  config = Config(data=tiny_pianorolls, hidden_size=8, latent_size=4,
                  batch_size=1, num_steps=12, checkpoint_every=1,
                  valid_every=0, jit_compile=False)
  run_dir = str(tmp_path / "run")
  with pytest.raises(errors.TrainingError, match=r"at step (\d+)") as info:
    training.train(config, run_dir, make_dataset_and_model=_nan_factory(
        tiny_pianorolls), progress=False, log=lambda m: None)
  step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
  assert 1 <= step <= 4  # the NaN sequence comes up in the first epoch
  saved = _variables(run_dir)
  assert _latest_checkpoint_number(run_dir) == step - 1
  assert all(np.all(np.isfinite(v)) for v in saved.values())


def test_non_finite_bound_skipped_with_a_warning(tiny_pianorolls, tmp_path):
  config = Config(data=tiny_pianorolls, hidden_size=8, latent_size=4,
                  batch_size=1, num_steps=12, checkpoint_every=6,
                  valid_every=0, jit_compile=False, on_nonfinite="skip")
  messages = []
  result = training.train(config, str(tmp_path / "run"),
                         make_dataset_and_model=_nan_factory(tiny_pianorolls),
                         progress=False, log=messages.append)
  assert result.step == 12 and result.skipped_steps == 3  # 12 steps, 3 epochs
  assert sum("skipped the batch" in m for m in messages) == 3
  assert all(np.all(np.isfinite(v)) for v in _variables(
      str(tmp_path / "run")).values())


def test_resuming_with_another_configuration_is_refused(tiny_pianorolls,
                                                        tmp_path, capsys):
  run_dir = tmp_path / "run"
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "2",
                              "--no-jit")) == 0
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "2",
                              "--no-jit", "--latent-size", "6")) == 2
  err = capsys.readouterr().err
  assert "latent_size: stored 4, given 6" in err and "Traceback" not in err
  with pytest.raises(ConfigError, match="bound"):
    training.train(Config(data=tiny_pianorolls, hidden_size=8, latent_size=4,
                         pad_to_multiple=32, bound="iwae"), str(run_dir))


def test_clear_errors_for_bad_input(tmp_path, capsys):
  bad = tmp_path / "bad.pkl"
  bad.write_text("not a pickle")
  assert cli.main(_train_args(str(bad), tmp_path / "r", "--num-steps",
                              "1")) == 2
  err = capsys.readouterr().err
  assert str(bad) in err and "not a readable pickle" in err
  assert "Traceback" not in err
  assert cli.main(["eval", str(tmp_path / "nowhere")]) == 2
  assert "no config here" in capsys.readouterr().err
  with pytest.raises(ConfigError, match="num_particles must be >= 1"):
    Config(num_particles=0)
  with pytest.raises(SystemExit):
    cli.main(["train", "--run-dir", "x", "--bound", "vi"])
  assert cli.main(_train_args(str(tmp_path), tmp_path / "r2", "--num-steps",
                              "1")) == 2  # a folder, not a prepared set
  err = capsys.readouterr().err
  assert "manifest.json: no such file" in err and "Traceback" not in err
  with pytest.raises(ConfigError, match="seed"):
    Config(seed=2 ** 31)
  with pytest.raises(DataError):
    factory.make_dataset_and_model(Config(data=str(tmp_path / "none.pkl")))


def test_sigterm_saves_a_checkpoint_at_the_step_reached(tiny_pianorolls,
                                                       tmp_path):
  # No periodic checkpoint before step 1000: what is saved comes from the
  # SIGTERM (as from `timeout` or a batch scheduler's time limit).
  run_dir = tmp_path / "run"
  command = [sys.executable, "-m", "seqlvm.cli"] + _train_args(
      tiny_pianorolls, run_dir, "--num-steps", "100000", "--no-jit",
      "--checkpoint-every", "1000", "--valid-every", "3",
      "--valid-variance-sweeps", "0", "--valid-samples", "0")
  log_path = tmp_path / "train.log"
  with open(log_path, "wb") as log_file, subprocess.Popen(
      command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT) as process:
    deadline = time.time() + 120
    while "step 3: valid" not in log_path.read_text() and (
        time.time() < deadline):
      assert process.poll() is None, log_path.read_text()[-2000:]
      time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
  log = log_path.read_text()
  assert "seqlvm train: terminated (SIGTERM)." in log, log[-2000:]
  assert "Traceback" not in log, log[-2000:]
  interrupted = re.search(r"Interrupted at step (\d+); saved ", log)
  assert interrupted, log[-2000:]
  step = int(interrupted.group(1))
  assert 3 <= step < 1000
  assert _latest_checkpoint_number(run_dir) == step


def test_a_proposal_bound_is_stored_announced_and_kept_on_resume(
    tiny_pianorolls, tmp_path, capsys):
  run_dir = tmp_path / "run"
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "2",
                              "--no-jit", "--proposal-bound", "iwae")) == 0
  err = capsys.readouterr().err
  assert "with fivo (N=4), its proposal with iwae on" in err
  with open(run_dir / "config.json") as f:
    assert json.load(f)["proposal_bound"] == "iwae"
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "3",
                              "--no-jit", "--proposal-bound", "elbo")) == 2
  err = capsys.readouterr().err
  assert "proposal_bound: stored 'iwae', given 'elbo'" in err
  assert "Traceback" not in err
  # Resumed without the flag, it keeps the stored proposal bound.
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "3",
                              "--no-jit")) == 0
  assert "its proposal with iwae" in capsys.readouterr().err
  with open(run_dir / "config.json") as f:
    assert json.load(f)["proposal_bound"] == "iwae"
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "2",
                              "--no-jit", "--model", "wavenet",
                              "--proposal-bound", "iwae")) == 2
  err = capsys.readouterr().err
  assert "wavenet model has no latents, so no proposal" in err
  assert "Traceback" not in err


def _model_variables(prefix):
  reader = tf.train.load_checkpoint(str(prefix))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def test_keep_every_keeps_models_past_pruning_for_eval_and_resume(
    tiny_pianorolls, tmp_path, capsys):
  run_dir = tmp_path / "run"
  common = ["--no-jit", "--checkpoint-every", "2", "--keep-checkpoints", "2",
            "--valid-every", "0", "--keep-every", "2"]
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "6",
                              *common)) == 0
  kept = run_dir / "kept"
  # ckpt/ prunes to the newest two; kept/ has every step divisible by 2.
  assert sorted(p.name for p in (run_dir / "ckpt").glob("*.index")) == [
      "ckpt-4.index", "ckpt-6.index"]
  assert sorted(p.name for p in kept.glob("*.index")) == [
      "ckpt-2.index", "ckpt-4.index", "ckpt-6.index"]
  # A kept model is the run's state at its step, as the periodic one is.
  original = {n: _model_variables(kept / f"ckpt-{n}") for n in (2, 4, 6)}
  at_6 = _model_variables(run_dir / "ckpt" / "ckpt-6")
  assert original[6].keys() == at_6.keys() and len(at_6) > 20
  for k in at_6:
    np.testing.assert_array_equal(original[6][k], at_6[k], err_msg=k)
  assert any(not np.array_equal(original[2][k], original[6][k])
             for k in at_6)

  # eval reads kept-N, and ckpt-N finds a pruned step in kept/.
  capsys.readouterr()
  assert cli.main(["eval", str(run_dir), "--checkpoint", "kept-2",
                   "--bounds", "elbo", "--num-particles", "2",
                   "--no-progress"]) == 0
  assert "checkpoint kept/ckpt-2 (step 2)" in capsys.readouterr().out
  assert (run_dir / "eval" / "test" / "kept-2").is_dir()
  assert cli.main(["eval", str(run_dir), "--checkpoint", "ckpt-2",
                   "--bounds", "elbo", "--num-particles", "2",
                   "--no-progress"]) == 0
  assert "checkpoint kept/ckpt-2 (step 2)" in capsys.readouterr().out
  assert cli.main(["eval", str(run_dir), "--checkpoint", "kept-3",
                   "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "no checkpoint kept-3" in err and "kept/ckpt-4" in err

  # Resumed from step 4 (the step-6 checkpoint lost): the kept step 6 is
  # removed, trained again and kept again, the same model as before.
  for f in (run_dir / "ckpt").glob("ckpt-6.*"):
    f.unlink()
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "8",
                              *common)) == 0
  err = capsys.readouterr().err
  assert "removed the kept checkpoint(s) of steps 6" in err, err
  assert sorted(p.name for p in kept.glob("*.index")) == [
      "ckpt-2.index", "ckpt-4.index", "ckpt-6.index", "ckpt-8.index"]
  again = _model_variables(kept / "ckpt-6")
  for k in at_6:
    np.testing.assert_allclose(again[k], original[6][k], rtol=1e-5,
                               atol=1e-6, err_msg=k)
  # --keep-every may change on resume, and 0 turns it off.
  assert cli.main(_train_args(tiny_pianorolls, run_dir, "--num-steps", "10",
                              *common[:-1], "0")) == 0
  assert not (kept / "ckpt-10.index").exists()
  assert cli.main(_train_args(tiny_pianorolls, tmp_path / "bad", *common[:-1],
                              "-1")) == 2
  assert "keep_every must be >= 0" in capsys.readouterr().err

