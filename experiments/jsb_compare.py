"""The experiment loop on JSB Chorales: three VRNNs, one per training bound,
each stopped early on its validation bound, compared with `seqlvm compare`.

Trains the VRNN (hidden 64, latent 32, N = 4, batch 4) with ELBO, IWAE and
FIVO, two trainings at a time, each for at most --minutes of wall-clock time
(validating every --valid-every steps, keeping the best checkpoint,
--early-stopping validations of patience), then evaluates each run's best
checkpoint on the test split with all three bounds at N = 1, 4 and 16 and
writes table.md, table.csv and bounds.png to --out/compare.

    python experiments/jsb_compare.py --minutes 12 --out runs/jsb_compare

Runs resume: rerunning continues each to its budget, and the comparison
reuses the evaluation records already stored.
"""

import argparse
import os
import subprocess
import sys
import time

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                            "data", "pianorolls", "jsb.pkl")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default=DEFAULT_DATA)
  parser.add_argument("--out", default="runs/jsb_compare")
  parser.add_argument("--minutes", type=float, default=12.,
                      help="training budget per run [12]")
  parser.add_argument("--steps", type=int, default=20000)
  parser.add_argument("--valid-every", type=int, default=250)
  parser.add_argument("--early-stopping", type=int, default=6)
  parser.add_argument("--parallel", type=int, default=2)
  parser.add_argument("--num-particles", type=int, nargs="+",
                      default=[1, 4, 16])
  args = parser.parse_args()
  seqlvm = [sys.executable, "-m", "seqlvm.cli"]
  pending = ["elbo", "iwae", "fivo"]
  running = {}
  os.makedirs(args.out, exist_ok=True)
  while pending or running:
    while pending and len(running) < args.parallel:
      bound = pending.pop(0)
      run_dir = os.path.join(args.out, bound)
      log = open(os.path.join(args.out, f"{bound}.log"), "a")
      command = seqlvm + [
          "train", "--data", os.path.abspath(args.data), "--run-dir",
          run_dir, "--bound", bound, "--num-steps", str(args.steps),
          "--valid-every", str(args.valid_every), "--early-stopping",
          str(args.early_stopping), "--checkpoint-every", "500",
          "--max-minutes", str(args.minutes), "--progress-every", "250"]
      print(" ".join(command[2:]), flush=True)
      running[bound] = (subprocess.Popen(command, stdout=log, stderr=log),
                        log, time.time())
    for bound, (process, log, start) in list(running.items()):
      if process.poll() is not None:
        log.close()
        print(f"{bound}: exit {process.returncode} after "
              f"{(time.time() - start) / 60:.1f} min", flush=True)
        if process.returncode:
          sys.exit(f"training {bound} failed; see {log.name}")
        del running[bound]
    time.sleep(5)
  command = seqlvm + ["compare"] + [
      os.path.join(args.out, b) for b in ("elbo", "iwae", "fivo")] + [
          "--num-particles", *map(str, args.num_particles), "--out",
          os.path.join(args.out, "compare"), "--no-progress"]
  print(" ".join(command[2:]), flush=True)
  sys.exit(subprocess.call(command))


if __name__ == "__main__":
  main()
