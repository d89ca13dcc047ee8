"""experiments/reproduce_fivo.py's bookkeeping: run names per training seed,
and the ordering's paired differences over seeds, on hand-made records."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from seqlvm.run import records

_EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments")


@pytest.fixture(scope="module")
def reproduce():
  sys.path.insert(0, _EXPERIMENTS)
  try:
    import reproduce_fivo  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(_EXPERIMENTS)
  return reproduce_fivo


LENGTHS = [10, 20, 30]


def _run(out, name, values, step=500, lengths=LENGTHS):
  """A run directory with a best.json and its best checkpoint's test record
  under FIVO at N = 4 (per-sequence bounds `values`)."""
  run_dir = os.path.join(out, "jsb", name)
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, "best.json"), "w") as f:
    json.dump({"step": step, "value": -1.}, f)
  record = {"split": "test", "checkpoint": f"best/ckpt-{step}",
            "bound": "fivo", "num_particles": 4, "seed": 0, "batch_size": 4,
            "values": list(values), "lengths": list(lengths),
            "ll_per_t": sum(values) / sum(lengths)}
  records.write(record, run_dir)
  return run_dir


def test_run_names(reproduce, tmp_path):
  assert reproduce.run_name("iwae", 0) == "iwae"
  assert reproduce.run_name("iwae", 3) == "iwae-seed3"
  assert reproduce.bound_and_seed("runs/x/jsb/fivo") == ("fivo", 0)
  assert reproduce.bound_and_seed("runs/x/jsb/fivo-seed12/") == ("fivo", 12)
  for name in ("fivo-seed10", "elbo", "fivo", "iwae-seed2", "fivo-seed2"):
    os.makedirs(tmp_path / "jsb" / name)
  (tmp_path / "jsb" / "fivo-seed3.log").write_text("")  # not a run
  os.makedirs(tmp_path / "jsb" / "fivo-seedling")  # nor is this
  assert [os.path.basename(r) for r in reproduce.runs_of(str(tmp_path), "jsb")
         ] == ["elbo", "iwae-seed2", "fivo", "fivo-seed2", "fivo-seed10"]


def test_train_command_passes_the_seed(reproduce):
  args = types.SimpleNamespace(
      size=None, max_length=None, data_dir="d", learning_rate=2e-4,
      steps=10, valid_every=5, early_stopping=2, minutes=1.,
      lr_schedule="constant", kl_warmup_steps=0, weight_decay=0.,
      train_particles=4, keep_every=0)
  seed0 = reproduce.train_command(args, "jsb", "iwae", "r")
  seed2 = reproduce.train_command(args, "jsb", "iwae", "r", seed=2)
  # Seed 0 passes no flag, so runs trained before --seeds resume unchanged.
  assert "--seed" not in seed0
  assert seed2 == seed0 + ["--seed", "2"]


@pytest.mark.parametrize("schedule", ["constant", "exponential", "cosine"])
def test_train_command_passes_only_flags_that_apply(reproduce, schedule,
                                                     tmp_path, capsys):
  from seqlvm import cli  # pylint: disable=g-import-not-at-top
  args = types.SimpleNamespace(
      size=None, max_length=None, data_dir="d", learning_rate=1e-3,
      steps=10, valid_every=5, early_stopping=2, minutes=1.,
      lr_schedule=schedule, lr_decay_steps=20, lr_decay_rate=0.5,
      lr_min_fraction=0.02, warmup_steps=0, kl_warmup_steps=6,
      kl_weight_start=0., weight_decay=1e-4, train_particles=8,
      keep_every=2500)
  for bound in ("elbo", "iwae", "fivo"):
    argv = reproduce.train_command(args, "nottingham", bound,
                                   str(tmp_path / bound), seed=1)
    parsed = cli.build_parser().parse_args(argv[argv.index("train"):])
    config = cli._config_from_args(parsed)  # pylint: disable=protected-access
    assert config.lr_schedule == schedule and config.kl_warmup_steps == 6
    assert config.weight_decay == 1e-4
    # --train-particles sets the particle bounds' N; the ELBO keeps 1.
    assert config.num_particles == (1 if bound == "elbo" else 8)
    assert config.keep_every == 2500
    if schedule == "exponential":
      assert config.lr_decay_rate == 0.5
    if schedule == "cosine":
      assert config.lr_min_fraction == 0.02
    assert "Warning" not in capsys.readouterr().err, (bound, argv)


def test_one_seed_each_is_the_plain_paired_difference(reproduce, tmp_path):
  a = _run(str(tmp_path), "fivo", [-10., -22., -29.])
  b = _run(str(tmp_path), "iwae", [-11., -21., -33.])
  out = tmp_path / "compare" / "n16"  # made by ordering
  rows = reproduce.ordering([b, a], str(out))
  assert len(rows) == 1
  assert rows[0]["a"] == "fivo" and rows[0]["b"] == "iwae"
  assert rows[0]["difference"] == pytest.approx((1. - 1. + 4.) / 60.)
  assert math.isnan(rows[0]["seed_se"])  # no bound has two seeds
  table = (out / "ordering.md").read_text()
  assert "| FIVO-trained - IWAE-trained | +0.067 |" in table
  assert "per seed" not in table  # one seed's table as before --seeds


def test_seeds_are_averaged_paired_and_their_spread_pooled(reproduce,
                                                           tmp_path):
  fivo = {0: [-10., -22., -29.], 1: [-12., -20., -31.], 2: [-9., -21., -27.]}
  iwae = {0: [-11., -21., -33.], 1: [-10., -23., -30.]}
  elbo = {0: [-13., -25., -35.]}
  runs = [_run(str(tmp_path), reproduce.run_name(bound, s), v)
          for bound, seeds in (("elbo", elbo), ("iwae", iwae),
                               ("fivo", fivo))
          for s, v in seeds.items()]
  rows = {(r["a"], r["b"]): r for r in reproduce.ordering(runs, str(tmp_path))}
  total = float(sum(LENGTHS))
  mean = {b: np.mean(list(v.values()), axis=0)
          for b, v in (("fivo", fivo), ("iwae", iwae), ("elbo", elbo))}
  row = rows["fivo", "iwae"]
  assert row["difference"] == pytest.approx(
      (mean["fivo"] - mean["iwae"]).sum() / total)
  assert row["se"] == pytest.approx(records.difference(
      {"values": mean["fivo"], "lengths": LENGTHS},
      {"values": mean["iwae"], "lengths": LENGTHS})["ll_per_t_se"])
  # Seed by seed, only the seeds both bounds have (0 and 1).
  assert row["per_seed"] == pytest.approx(
      {0: (1. - 1. + 4.) / total, 1: (-2. + 3. - 1.) / total})
  assert row["seeds_a"] == [0, 1, 2] and row["seeds_b"] == [0, 1]
  # Each run's test bound per timestep is one draw; the variances of FIVO's
  # three and IWAE's two are pooled (2 and 1 degrees of freedom), and ELBO's
  # single run only counts in 1 / n.
  per_t = {b: [sum(v) / total for v in seeds.values()]
           for b, seeds in (("fivo", fivo), ("iwae", iwae))}
  pooled = (2 * np.var(per_t["fivo"], ddof=1) +
            1 * np.var(per_t["iwae"], ddof=1)) / 3
  assert row["seed_se"] == pytest.approx(math.sqrt(pooled * (1 / 3 + 1 / 2)))
  assert rows["iwae", "elbo"]["seed_se"] == pytest.approx(
      math.sqrt(pooled * (1 / 2 + 1)))
  assert rows["iwae", "elbo"]["per_seed"] == pytest.approx(
      {0: (2. + 4. + 2.) / total})
  table = (tmp_path / "ordering.md").read_text()
  assert "| FIVO-trained - IWAE-trained | 3 / 2 |" in table
  assert "0: +0.067, 1: +0.000" in table


def test_records_of_other_sequences_are_named(reproduce, tmp_path):
  a = _run(str(tmp_path), "fivo", [-10., -22., -29.])
  b = _run(str(tmp_path), "fivo-seed1", [-10., -22.], lengths=[10, 20])
  c = _run(str(tmp_path), "iwae", [-11., -21., -33.])
  with pytest.raises(SystemExit, match="the fivo and iwae records"):
    reproduce.ordering([a, b, c], str(tmp_path))


def test_filter_table_reads_the_stored_ess_and_resampling(reproduce,
                                                          tmp_path):
  runs = []
  for name, step, stats in (("iwae", 500, {4: (-20., .68, .16),
                                            16: (-19., .59, .30)}),
                            ("fivo", 750, {4: (-21., .61, .28)})):
    run = _run(str(tmp_path), name, [-10., -20., -30.], step=step)
    for n, (total, ess, rate) in stats.items():
      records.write({"split": "test", "checkpoint": f"best/ckpt-{step}",
                     "bound": "fivo", "num_particles": n, "seed": 0,
                     "batch_size": 4, "values": [total, 0., 0.],
                     "lengths": LENGTHS, "ll_per_t": total / 60.,
                     "ess_mean_fraction": ess, "resampling_rate": rate},
                    run)
    runs.append(run)
  out = tmp_path / "compare-seeds0" / "n4-16"  # made by filtering
  rows = reproduce.filtering(runs, str(out))
  assert rows[0]["run"] == "iwae" and rows[0]["step"] == 500
  assert rows[0][4] == pytest.approx(
      {"bound": -20. / 60, "ess": .68, "resampled": .16})
  assert rows[0][16]["resampled"] == pytest.approx(.30)
  assert rows[1][16] is None  # FIVO-trained has no record at N = 16
  table = (out / "filter.md").read_text()
  assert ("| iwae | 500 | -0.333 | 0.680 | 0.160 | -0.317 | 0.590 | 0.300 "
          "| +0.017 |") in table
  assert "| fivo | 750 | -0.350 | 0.610 | 0.280 | n/a | n/a | n/a | n/a |" \
      in table
  # the same run name under another --out directory gets a row of its own
  twin = str(tmp_path / "decay" / "iwae")
  shutil.copytree(runs[0], twin)
  rows = reproduce.filtering([runs[0], twin], str(tmp_path / "twins"))
  assert [r["run"] for r in rows] == [f"iwae ({runs[0]})", f"iwae ({twin})"]


def test_fivo_with_an_iwae_proposal_is_a_training_of_its_own(reproduce,
                                                             tmp_path):
  """fivo-qiwae trains with --bound fivo --proposal-bound iwae, is found
  beside the bounds' runs, and is paired with the IWAE- and FIVO-trained
  runs under its own label."""
  args = types.SimpleNamespace(
      size=None, max_length=None, data_dir="d", learning_rate=2e-4,
      steps=10, valid_every=5, early_stopping=2, minutes=1.,
      lr_schedule="constant", kl_warmup_steps=0, weight_decay=0.,
      train_particles=4, keep_every=0)
  command = reproduce.train_command(args, "jsb", "fivo-qiwae", "r", seed=1)
  plain = reproduce.train_command(args, "jsb", "fivo", "r", seed=1)
  at = command.index("--bound")
  assert command[at:at + 4] == ["--bound", "fivo", "--proposal-bound", "iwae"]
  assert command[:at + 2] + command[at + 4:] == plain
  assert reproduce.bound_and_seed("o/jsb/fivo-qiwae-seed1") == ("fivo-qiwae",
                                                                1)
  runs = [_run(str(tmp_path), name, values) for name, values in (
      ("iwae", [-11., -21., -33.]), ("fivo", [-10., -22., -29.]),
      ("fivo-qiwae", [-10., -20., -30.]))]
  assert reproduce.runs_of(str(tmp_path), "jsb") == runs
  rows = {(r["a"], r["b"]): r for r in reproduce.ordering(runs,
                                                          str(tmp_path))}
  assert rows["fivo-qiwae", "iwae"]["difference"] == pytest.approx(5. / 60.)
  assert rows["fivo-qiwae", "fivo"]["difference"] == pytest.approx(1. / 60.)
  table = (tmp_path / "ordering.md").read_text()
  assert "| FIVO (IWAE q)-trained - IWAE-trained | +0.083 |" in table
  for run in runs:  # validation curves, for valid.png
    with open(os.path.join(run, "best.json"), "w") as f:
      json.dump({"step": 500, "value": -1.,
                 "validations": [[250, -2.], [500, -1.]]}, f)
  reproduce.curves(runs, str(tmp_path / "figs"), "jsb")
  assert (tmp_path / "figs" / "valid.png").stat().st_size > 0
  # runs told apart by a setting: one label (and colour) each, and a count
  # that does not match is refused before anything is drawn
  reproduce.curves(runs, str(tmp_path / "labelled"), "jsb",
                   labels=["a", "b", "c"])
  assert (tmp_path / "labelled" / "valid.png").stat().st_size > 0
  with pytest.raises(ValueError, match="2 labels for 3 runs"):
    reproduce.curves(runs, str(tmp_path / "none"), "jsb", labels=["a", "b"])
  assert not (tmp_path / "none").exists()


def test_a_warm_start_trains_fivo_from_the_same_seeds_iwae_run(
    reproduce, tmp_path, capsys):
  """fivo-warm trains FIVO from OUT/SET/iwae[-seedS] at its own constant
  rate, without the IWAE run's schedule and KL warm-up; in one call it
  starts only once that IWAE run has finished; it is paired with the
  IWAE- and FIVO-trained runs and drawn from the step it started at."""
  from seqlvm import cli  # pylint: disable=g-import-not-at-top
  args = types.SimpleNamespace(
      size=None, max_length=None, data_dir="d", learning_rate=1e-3,
      steps=10, valid_every=5, early_stopping=2, minutes=1.,
      lr_schedule="cosine", lr_decay_steps=20, lr_min_fraction=0.02,
      warmup_steps=0, kl_warmup_steps=6, kl_weight_start=0.,
      weight_decay=0.1, train_particles=4, keep_every=0,
      out=str(tmp_path), warm_learning_rate=2e-5)
  argv = reproduce.train_command(args, "nottingham", "fivo-warm",
                                 str(tmp_path / "w"), seed=1)
  parsed = cli.build_parser().parse_args(argv[argv.index("train"):])
  config = cli._config_from_args(parsed)  # pylint: disable=protected-access
  assert config.bound == "fivo" and config.learning_rate == 2e-5
  assert config.lr_schedule == "constant" and config.kl_warmup_steps == 0
  assert config.weight_decay == 0.1 and config.seed == 1
  assert argv[argv.index("--init-from") + 1] == os.path.join(
      str(tmp_path), "nottingham", "iwae-seed1")
  assert "Warning" not in capsys.readouterr().err
  # It waits for its own seed's IWAE run, not for the others.
  pending = [("jsb", "iwae-seed1"), ("jsb", "fivo-warm-seed1"),
             ("jsb", "fivo-warm")]
  assert not reproduce.ready(pending[1], pending, {})
  assert reproduce.ready(pending[2], pending, {})
  assert not reproduce.ready(pending[1], [], {("jsb", "iwae-seed1"): None})
  assert reproduce.ready(pending[1], [], {})

  runs = [_run(str(tmp_path), name, values) for name, values in (
      ("iwae", [-11., -21., -33.]), ("fivo", [-10., -22., -29.]),
      ("fivo-warm", [-10., -20., -31.]))]
  assert reproduce.runs_of(str(tmp_path), "jsb") == runs
  rows = {(r["a"], r["b"]): r for r in reproduce.ordering(runs,
                                                          str(tmp_path))}
  assert rows["fivo-warm", "iwae"]["difference"] == pytest.approx(4. / 60.)
  assert rows["fivo-warm", "fivo"]["difference"] == pytest.approx(0.)
  assert ("| FIVO (IWAE start)-trained - IWAE-trained | +0.067 |" in
          (tmp_path / "ordering.md").read_text())
  with open(os.path.join(runs[2], "config.json"), "w") as f:
    json.dump({"init_from": "/x/iwae/best/ckpt-62250"}, f)
  assert reproduce.warm_start_step(runs[2]) == 62250
  with open(os.path.join(runs[1], "config.json"), "w") as f:
    json.dump({"init_from": ""}, f)
  assert reproduce.warm_start_step(runs[1]) == 0
  for run in runs:
    with open(os.path.join(run, "best.json"), "w") as f:
      json.dump({"step": 500, "value": -1.,
                 "validations": [[250, -2.], [500, -1.]]}, f)
  reproduce.curves(runs, str(tmp_path / "figs"), "jsb")
  assert (tmp_path / "figs" / "valid.png").stat().st_size > 0


def test_a_warm_start_waits_for_an_iwae_run_that_has_finished(reproduce,
                                                              tmp_path):
  """Its starting point cannot change later, so a fivo-warm run does not
  start from an IWAE run that failed or stopped at its time cap (in this
  call or as stopped.json records it); one with checkpoints of its own
  resumes whatever its IWAE run did."""
  args = types.SimpleNamespace(out=str(tmp_path), steps=100)
  key = ("jsb", "iwae-seed1")
  assert reproduce.warm_blocker(args, "jsb", "fivo-seed1", {}) is None
  assert reproduce.warm_blocker(args, "jsb", "fivo-warm-seed1", {}) is None
  finished = {"steps": 40, "early_stopped": True, "returncode": 0}
  assert reproduce.warm_blocker(args, "jsb", "fivo-warm-seed1",
                                {key: finished}) is None
  at_limit = dict(finished, steps=100, early_stopped=False)
  assert reproduce.warm_blocker(args, "jsb", "fivo-warm-seed1",
                                {key: at_limit}) is None
  capped = dict(finished, early_stopped=False)
  assert "stopped at its time cap at 40 updates" in reproduce.warm_blocker(
      args, "jsb", "fivo-warm-seed1", {key: capped})
  assert "failed (returncode 1)" in reproduce.warm_blocker(
      args, "jsb", "fivo-warm-seed1", {key: dict(finished, returncode=1)})
  with open(tmp_path / "stopped.json", "w") as f:
    json.dump({"jsb/iwae-seed1": capped}, f)
  assert "time cap" in reproduce.warm_blocker(args, "jsb", "fivo-warm-seed1",
                                              {})
  assert reproduce.warm_blocker(args, "jsb", "fivo-warm", {}) is None
  os.makedirs(tmp_path / "jsb" / "fivo-warm-seed1" / "ckpt")
  (tmp_path / "jsb" / "fivo-warm-seed1" / "ckpt" / "ckpt-5.index").write_text(
      "")
  assert reproduce.warm_blocker(args, "jsb", "fivo-warm-seed1", {}) is None


def test_latent_table_keeps_runs_of_the_same_name_apart(reproduce, tmp_path,
                                                        monkeypatch):
  """The same bound and seed under two --out directories (a setting
  compared) get a row each, named by path; distinct names stay short."""
  seen = []

  def fake_evaluate(run, split, batch_size, samples, seed, device):
    seen.append(run)
    kl = 1. + len(seen)
    return {"checkpoint": "best/ckpt-1", "elbo": -3., "elbo_se": .1,
            "recon": -3. + kl, "recon_se": .1, "kl": kl, "kl_se": .1}

  monkeypatch.setattr(reproduce.latent_usage, "evaluate", fake_evaluate)
  a = os.path.join("plain", "nottingham", "iwae-seed1")
  b = os.path.join("decay", "nottingham", "iwae-seed1")
  reproduce.latents([a, b], str(tmp_path))
  table = (tmp_path / "latent.md").read_text()
  assert f"| iwae-seed1 ({a}) | best/ckpt-1 |" in table and "**2.000**" in table
  assert f"| iwae-seed1 ({b}) | best/ckpt-1 |" in table and "**3.000**" in table
  assert sorted(json.loads((tmp_path / "latent.json").read_text())) == sorted(
      [f"iwae-seed1 ({a})", f"iwae-seed1 ({b})"])
  seen.clear()  # distinct names stay short
  reproduce.latents([a, "x/fivo-seed1"], str(tmp_path / "short"))
  table = (tmp_path / "short" / "latent.md").read_text()
  assert "| iwae-seed1 | best/ckpt-1 |" in table
  assert "| fivo-seed1 | best/ckpt-1 |" in table


# A stand-in for `seqlvm train`: it writes its pid, then waits; SIGTERM or
# SIGINT makes it "checkpoint" (a file naming the signal, and the line the
# real one prints, which `stopped` reads) and exit as the real one does,
# with 128 + the signal.
_TRAINING = """
import os, signal, sys, time
run_dir = sys.argv[1]
def stop(signum, frame):
  with open(os.path.join(run_dir, "signal"), "w") as f:
    f.write(signal.Signals(signum).name)
  print("Interrupted at step 7; saved ckpt-7.", flush=True)
  sys.exit(128 + signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
os.makedirs(run_dir, exist_ok=True)
with open(os.path.join(run_dir, "pid"), "w") as f:
  f.write(str(os.getpid()))
while True:
  time.sleep(0.05)
"""

_SCRIPT = """
import argparse, sys
sys.path.insert(0, sys.argv[1])
import reproduce_fivo as r
r.train_command = lambda args, name, bound, run_dir, seed=0: [
    sys.executable, "-c", sys.argv[3], run_dir]
args = argparse.Namespace(out=sys.argv[2], parallel=2, no_compare=True)
sys.exit(r.train_all(args, [("jsb", "iwae"), ("jsb", "fivo"),
                            ("jsb", "elbo")]))
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_reaches_the_trainings_and_they_are_recorded(tmp_path,
                                                              name):
  """A `kill` of the script (or Ctrl-C in its terminal, which now reaches
  only the script) stops its running trainings the way the same signal to
  each would (they checkpoint and exit) and records them: before, a SIGTERM
  left the trainings running on, unrecorded. The one not yet started never
  starts."""
  signum = getattr(signal, name)
  out = tmp_path / "out"
  script = subprocess.Popen(
      [sys.executable, "-c", _SCRIPT, _EXPERIMENTS, str(out), _TRAINING],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  pids = [out / "jsb" / run / "pid" for run in ("iwae", "fivo")]
  deadline = time.time() + 120
  while not all(p.exists() and p.read_text() for p in pids):
    assert script.poll() is None, script.stdout.read()
    assert time.time() < deadline, "the trainings did not start"
    time.sleep(0.1)
  script.send_signal(signum)
  try:
    output, _ = script.communicate(timeout=60)
  except subprocess.TimeoutExpired:  # leave no process to later tests
    script.kill()
    script.communicate()
    for p in pids:
      try:
        os.kill(int(p.read_text()), signal.SIGKILL)
      except ProcessLookupError:
        pass
    raise
  assert script.returncode == 128 + signum, output
  assert f"Stopped by {name}" in output
  for run in ("iwae", "fivo"):
    assert (out / "jsb" / run / "signal").read_text() == name
    pid = int((out / "jsb" / run / "pid").read_text())
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
  assert not (out / "jsb" / "elbo").exists()
  with open(out / "stopped.json") as f:
    stopped = json.load(f)
  assert sorted(stopped) == ["jsb/fivo", "jsb/iwae"]
  for record in stopped.values():
    assert record["returncode"] == 128 + signum
    assert record["steps"] == 7 and not record["early_stopped"]
