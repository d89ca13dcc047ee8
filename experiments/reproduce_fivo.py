"""Reproduction of the FIVO paper's VRNN table: ELBO-, IWAE- and
FIVO-trained VRNNs on the four pianoroll sets, evaluated with all three
bounds on the test split.

Settings, as read from the reference code (tensorflow/models,
research/fivo):
- run_fivo.py's flags: batch_size 4, num_samples (N) 4, Adam with
  learning_rate 0.0002, latent_size 64;
- bin/run_train.sh: the JSB example at learning_rate 0.0001;
- fivo/runners.py: the ELBO is trained as `bounds.iwae(num_samples=1)`
  (one sample) and FIVO resamples on `smc.ess_criterion` (ESS < N/2);
- fivo/models/vrnn.py (`create_vrnn`): every hidden width equals the
  latent size.

The anchors' re-run uses latent and hidden 32 for JSB and 64 for the
others: `--sizes` follows them. What differs from the reference, by
design: the reference's loss averages each sequence's bound per step over
the batch, while seqlvm's divides the batch's bound by its timesteps; and
no run here trains for the reference's unbounded number of steps. Each run
gets a wall-clock cap, validates every --valid-every steps and stops early
after --early-stopping validations without improvement; its best
validation checkpoint is evaluated on the whole test sequences at N = 4
(and N = 16 for the FIVO-trained run) with `seqlvm compare`, which writes
the set's table.md, table.csv and bounds.png.

    python experiments/reproduce_fivo.py --sets jsb --minutes 45 --parallel 2 \\
        [--out runs/reproduce] [--data-dir ../shared/data/pianorolls]

Rerunning resumes every run from its directory (a run that has stopped
early stays stopped; one at its cap trains --minutes more), and the
evaluations reuse the records already stored. Per run, stopped.json in
--out records the steps, the wall time, whether early stopping fired and
the best validation's step.
"""

import argparse
import json
import os
import subprocess
import sys
import time

from benchlib import command_line  # pylint: disable=g-import-not-at-top

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = {"jsb": "jsb.pkl", "nottingham": "nottingham.pkl",
         "musedata": "musedata.pkl", "piano-midi": "piano-midi.de.pkl"}
SIZES = {"jsb": 32, "nottingham": 64, "musedata": 64, "piano-midi": 64}
BOUNDS = ("elbo", "iwae", "fivo")


def train_command(args, name, bound, run_dir):
  size = SIZES[name] if args.size is None else args.size
  return [sys.executable, "-m", "seqlvm.cli", "train",
          "--data", os.path.join(os.path.abspath(args.data_dir), FILES[name]),
          "--run-dir", run_dir, "--bound", bound,
          "--num-particles", "1" if bound == "elbo" else "4",
          "--batch-size", "4", "--hidden-size", str(size),
          "--latent-size", str(size), "--learning-rate",
          str(args.learning_rate), "--num-steps", str(args.steps),
          "--valid-every", str(args.valid_every), "--early-stopping",
          str(args.early_stopping), "--checkpoint-every", "500",
          "--max-minutes", str(args.minutes), "--progress-every", "250"]


def stopped(run_dir, log_path, seconds):
  """Where a run stopped: steps, early stopping, the best validation."""
  with open(log_path) as f:
    log = f.read()
  best = {}
  if os.path.exists(os.path.join(run_dir, "best.json")):
    with open(os.path.join(run_dir, "best.json")) as f:
      best = json.load(f)
  trained = [l for l in log.splitlines() if l.startswith("Trained to step")]
  steps = int(trained[-1].split()[3].rstrip(":.")) if trained else None
  return {"steps": steps, "wall_seconds_this_call": round(seconds),
          "early_stopped": "Early stopping at step" in log or
                           "has stopped early" in log,
          "best_step": best.get("step"), "best_valid": best.get("value")}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sets", nargs="+", default=list(FILES), choices=FILES)
  p.add_argument("--bounds", nargs="+", default=list(BOUNDS), choices=BOUNDS)
  p.add_argument("--data-dir", default=os.path.join(
      HERE, "..", "..", "shared", "data", "pianorolls"))
  p.add_argument("--out", default=os.path.join("runs", "reproduce"))
  p.add_argument("--minutes", type=float, default=45.,
                 help="wall-clock cap per run and call [45]")
  p.add_argument("--parallel", type=int, default=2)
  p.add_argument("--steps", type=int, default=100000)
  p.add_argument("--valid-every", type=int, default=250)
  p.add_argument("--early-stopping", type=int, default=6)
  p.add_argument("--learning-rate", type=float, default=2e-4,
                 help="Adam's rate [2e-4: run_fivo.py's default]")
  p.add_argument("--size", type=int, default=None,
                 help="latent and hidden size for every set [32 for JSB, "
                 "64 for the others]")
  p.add_argument("--no-compare", action="store_true",
                 help="train only")
  args = p.parse_args()
  print(command_line(), flush=True)
  pending = [(name, bound) for name in args.sets for bound in args.bounds]
  running, done = {}, {}
  while pending or running:
    while pending and len(running) < args.parallel:
      name, bound = pending.pop(0)
      run_dir = os.path.join(args.out, name, bound)
      os.makedirs(os.path.dirname(run_dir), exist_ok=True)
      log_path = os.path.join(args.out, name, f"{bound}.log")
      log = open(log_path, "a")  # pylint: disable=consider-using-with
      command = train_command(args, name, bound, run_dir)
      print(" ".join(command[2:]), flush=True)
      running[name, bound] = (subprocess.Popen(command, stdout=log,
                                               stderr=log),
                              log, log_path, run_dir, time.time())
    time.sleep(5)
    for key, (process, log, log_path, run_dir, start) in list(
        running.items()):
      if process.poll() is None:
        continue
      log.close()
      del running[key]
      record = stopped(run_dir, log_path, time.time() - start)
      record["returncode"] = process.returncode
      done[key] = record
      print(f"{key[0]} {key[1]}: {record}", flush=True)
      path = os.path.join(args.out, "stopped.json")
      previous = {}
      if os.path.exists(path):
        with open(path) as f:
          previous = json.load(f)
      previous[f"{key[0]}/{key[1]}"] = record
      with open(path, "w") as f:
        json.dump(previous, f, indent=1, sort_keys=True)
      finished = [b for b in args.bounds if (key[0], b) in done]
      if not args.no_compare and len(finished) == len(args.bounds):
        compare(args, key[0])


def compare(args, name):
  """`seqlvm compare` of a set's runs at N = 4 and 16, all three bounds."""
  runs = [os.path.join(args.out, name, b) for b in args.bounds]
  out = os.path.join(args.out, name, "compare")
  command = [sys.executable, "-m", "seqlvm.cli", "compare", *runs,
             "--num-particles", "4", "16", "--out", out, "--no-progress"]
  print(" ".join(command[2:]), flush=True)
  subprocess.call(command)


if __name__ == "__main__":
  main()
