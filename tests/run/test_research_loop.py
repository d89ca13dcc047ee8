"""The researcher's loop on three tiny runs that differ only in the bound:
best checkpoints, diagnostics in TensorBoard, evaluations that accumulate,
`seqlvm compare`, progress lines in a log file."""

import contextlib
import csv
import glob
import io
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from seqlvm import cli
from seqlvm.run import compare as compare_lib
from seqlvm.run import records
from tests.conftest import REPO
from tests.conftest import write_tiny_pianorolls

BOUNDS = ("elbo", "iwae", "fivo")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{bound: run directory} and the fivo run's stderr (not a terminal)."""
  root = tmp_path_factory.mktemp("runs")
  data = write_tiny_pianorolls(root / "tiny.pkl")
  found, logs = {}, {}
  for bound in BOUNDS:
    run_dir = root / bound
    err = io.StringIO()
    # The fivo run is the one whose summaries are read; the others only
    # need a checkpoint, a validation and their resampling rate.
    steps, diagnostics = ("6", "2") if bound == "fivo" else ("2", "0")
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(
        io.StringIO()):
      assert cli.main([
          "train", "--data", data, "--run-dir", str(run_dir), "--bound",
          bound, "--hidden-size", "8", "--latent-size", "4", "--no-jit",
          "--num-steps", steps, "--valid-every", "2", "--summary-every", "2",
          "--checkpoint-every", "2", "--progress-every", "2",
          "--valid-variance-sweeps", diagnostics, "--valid-samples",
          diagnostics,
          "--lr-schedule", "cosine", "--warmup-steps", "2"]) == 0, (
              err.getvalue())
    found[bound], logs[bound] = run_dir, err.getvalue()
  return found, logs


def _scalars(directory):
  """{tag: [(step, value)]} of the event files in `directory`, read with
  TensorBoard's event reader."""
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(
      str(directory), size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto)))
                for e in acc.Tensors(tag)]
          for tag in acc.Tags()["tensors"] if tag != "samples"}, acc


def test_non_tty_training_writes_plain_progress_lines(runs):
  _, logs = runs
  err = logs["fivo"]
  assert "\r" not in err
  lines = [l for l in err.splitlines() if l.startswith("train: step")]
  assert [l.split(",")[0] for l in lines] == [
      "train: step 2/6 (33%)", "train: step 4/6 (67%)",
      "train: step 6/6 (100%)"]
  assert "steps/s" not in err and "step/s" in lines[0]
  assert "ETA" in lines[0] and "ETA" not in lines[-1]
  # TensorFlow's start-up and CUDA lines are not there.
  assert "cuInit" not in err and "cuda" not in err.lower()


def test_the_diagnostics_reach_tensorboard(runs):
  found, _ = runs
  train, _ = _scalars(found["fivo"] / "train")
  for tag in ("fivo_per_timestep", "grad_norm", "learning_rate",
              "smc/ess_mean_fraction", "smc/ess_min_fraction",
              "smc/resampling_rate", "steps_per_second"):
    assert [s for s, _ in train[tag]] == [2, 4, 6], tag
  rates = dict(train["learning_rate"])
  # Cosine after 2 warm-up updates, over the 4 after them (resolved and
  # stored): the rate of the next update after 2, 4 and 6 updates.
  assert json.loads((found["fivo"] / "config.json").read_text())[
      "lr_decay_steps"] == 4
  np.testing.assert_allclose([rates[2], rates[4], rates[6]],
                             [1e-3, 5e-4, 0.], atol=1e-9)
  for tag in ("smc/ess_mean_fraction", "smc/ess_min_fraction"):
    assert all(0 < v <= 1 for _, v in train[tag])
  assert all(0 <= v <= 1 for _, v in train["smc/resampling_rate"])
  # The IWAE never resamples.
  iwae, _ = _scalars(found["iwae"] / "train")
  assert all(v == 0 for _, v in iwae["smc/resampling_rate"])
  valid, acc = _scalars(found["fivo"] / "valid")
  for tag in ("fivo_per_timestep", "smc/log_p_hat_variance",
              "smc/ess_mean_fraction", "smc/resampling_rate"):
    assert [s for s, _ in valid[tag]] == [2, 4, 6], tag
  assert all(v > 0 for _, v in valid["smc/log_p_hat_variance"])
  # Two pianoroll pictures of 88 pitches x 64 steps (3 pixels each).
  samples = acc.Tensors("samples")
  assert [e.step for e in samples] == [2, 4, 6]
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  encoded = tf.make_ndarray(samples[0].tensor_proto)
  assert encoded[:2].tolist() == [b"192", b"264"] and len(encoded) == 4
  assert encoded[2][:8] == b"\x89PNG\r\n\x1a\n"


def test_best_checkpoint_is_kept_and_used_by_default(runs, capsys):
  run = runs[0]["fivo"]
  record = json.loads((run / "best.json").read_text())
  assert [s for s, _ in record["validations"]] == [2, 4, 6]
  values = dict((s, v) for s, v in record["validations"])
  assert record["value"] == max(values.values())
  assert record["step"] == max(values, key=values.get)
  assert os.path.exists(run / record["checkpoint"]) is False  # a prefix
  assert glob.glob(str(run / (record["checkpoint"] + ".index")))
  assert cli.main(["eval", str(run), "--bounds", "fivo", "--num-particles",
                   "2", "--no-progress"]) == 0
  captured = capsys.readouterr()
  assert f"using best/ckpt-{record['step']}" in captured.err
  assert "the best validation" in captured.err
  assert cli.main(["eval", str(run), "--bounds", "fivo", "--num-particles",
                   "2", "--no-progress", "--checkpoint", "latest"]) == 0
  assert "using ckpt/ckpt-6" in capsys.readouterr().err
  assert cli.main(["eval", str(run), "--checkpoint", "ckpt-3",
                   "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "no checkpoint ckpt-3; there are: ckpt/ckpt-2" in err
  assert f"best/ckpt-{record['step']}" in err and "Traceback" not in err
  assert cli.main(["eval", str(run), "--checkpoint", "newest",
                   "--no-progress"]) == 2
  assert ("--checkpoint must be one of auto, best, latest, ckpt-N, best-N "
          "or kept-N, got 'newest'") in capsys.readouterr().err


def test_evaluations_accumulate_and_seeds_give_a_spread(runs, capsys):
  run = runs[0]["iwae"]
  args = ["eval", str(run), "--bounds", "iwae", "--num-particles", "3",
          "--no-progress"]
  assert cli.main(args + ["--seed", "5"]) == 0
  assert cli.main(args + ["--seed", "6"]) == 0
  out = capsys.readouterr().out
  found = records.find(run, split="test", bound="iwae", num_particles=3)
  assert [r["seed"] for r in found] == [5, 6]  # both remain
  a, b = found
  assert a["values"] != b["values"] and a["lengths"] == b["lengths"]
  assert len(a["values"]) == a["num_sequences"] == 4
  assert a["versions"]["tensorflow"] and a["versions"]["seqlvm"]
  stats = records.summarize(a["values"], a["lengths"])
  assert a["ll_per_t_se"] == pytest.approx(stats["ll_per_t_se"])
  assert f"{a['ll_per_t']:.4f} ± {a['ll_per_t_se']:.4f}" in out
  # --seeds 2 from seed 5: both records are reused, none computed.
  assert cli.main(args + ["--seed", "5", "--seeds", "2"]) == 0
  out = capsys.readouterr().out
  assert "(2 reused; --force computes them again)" in out
  mean = np.mean([a["values"], b["values"]], axis=0)
  combined = records.summarize(mean, a["lengths"])["ll_per_t"]
  assert f"{combined:.4f}" in out and "spread" in out
  spread = np.std([a["ll_per_t"], b["ll_per_t"]], ddof=1)
  assert f"{spread:.4f}" in out


def _png_size(path):
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n"
  return struct.unpack(">II", head[16:24])


def test_compare_prints_the_table_and_writes_csv_and_png(runs, tmp_path,
                                                         capsys):
  found, _ = runs
  out = tmp_path / "cmp"
  dirs = [str(found[b]) for b in BOUNDS]
  compare = ["compare", *dirs, "--num-particles", "1", "2", "--bounds",
             "iwae", "fivo", "--out", str(out), "--no-progress"]
  assert cli.main(compare) == 0
  captured = capsys.readouterr()
  # Labelled by the settings they differ in: the bound (and the fivo run's
  # longer training).
  for bound in BOUNDS:
    assert f"bound={bound}" in captured.out
  assert "N = 1" in captured.out and "N = 2" in captured.out
  with open(out / "table.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 3 * 2 * 2
  assert {r["label"].split(",")[0] for r in rows} == {
      f"bound={b}" for b in BOUNDS}
  # The table's numbers are the stored records' statistics.
  row = next(r for r in rows if r["label"].startswith("bound=fivo") and
             r["bound"] == "iwae" and r["num_particles"] == "2")
  rec = records.find(found["fivo"], split="test", bound="iwae",
                     num_particles=2, seed=0)
  assert len(rec) == 1
  assert float(row["ll_per_t"]) == pytest.approx(rec[0]["ll_per_t"])
  assert float(row["ll_per_t_se"]) == pytest.approx(rec[0]["ll_per_t_se"])
  markdown = (out / "table.md").read_text()
  assert markdown.count("**") == 2 * 2 * 2  # one best per bound and N
  assert f"{float(row['ll_per_t']):.3f} ± " in markdown
  width, height = _png_size(out / "bounds.png")
  assert (width, height) == (
      round(3 * compare_lib.PANEL_SIZE[0] * compare_lib.FIGURE_DPI),
      round(compare_lib.PANEL_SIZE[1] * compare_lib.FIGURE_DPI))
  # A second call computes nothing: every record is reused.
  before = {p: os.path.getmtime(p) for p in glob.glob(
      str(found["fivo"] / "eval" / "**" / "*.json"), recursive=True)}
  assert cli.main(compare) == 0
  assert before == {p: os.path.getmtime(p) for p in before}


def test_a_failed_restore_prints_one_message_and_no_tensorflow_noise(
    runs, tmp_path):
  # A config that no longer matches the checkpoints: each restore fails,
  # and TensorFlow would log a warning per unrestored value at exit (about
  # 50 lines here with --verbose).
  run = tmp_path / "mismatched"
  shutil.copytree(runs[0]["elbo"], run)
  config = json.loads((run / "config.json").read_text())
  (run / "config.json").write_text(json.dumps({**config, "hidden_size": 16}))
  process = subprocess.run(
      [sys.executable, "-m", "seqlvm.cli", "eval", str(run), "--no-progress",
       "--checkpoint", "latest"], cwd=REPO, capture_output=True, text=True,
      timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": ""})
  assert process.returncode == 2, process.stderr
  err = process.stderr.strip().splitlines()
  assert "seqlvm eval: error: No checkpoint could be restored" in (
      process.stderr)
  assert "incompatible tensor with shape (8,)" in process.stderr
  assert "WARNING:tensorflow" not in process.stderr
  assert "cuInit" not in process.stderr and "absl" not in process.stderr
  assert "Traceback" not in process.stderr
  # Our own lines only: a warning per checkpoint tried, and the error.
  assert all(line.startswith(("Warning: checkpoint", "seqlvm eval: error",
                              "  ")) for line in err), process.stderr
