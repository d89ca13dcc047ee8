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
the set's table.md, table.csv and bounds.png; beside them ordering.md
(the targets' ordering as paired differences), valid.png (the validation
curves), latent.md (each run's KL(q || p) per timestep, which shows a
run whose latents have collapsed: `latent_usage.py`) and filter.md (how
FIVO's filter fares on each run at N = 4 and 16: its mean ESS / N and how
often it resamples, which shows whose proposal is poor).

    python experiments/reproduce_fivo.py --sets jsb --minutes 45 --parallel 2 \\
        [--out runs/reproduce] [--data-dir ../shared/data/pianorolls]

--lr-schedule (with --lr-decay-steps and the rest) trains with
`seqlvm train`'s decaying schedules instead of the reference's constant
rate; give such runs their own --out, since a run's schedule cannot change
on resume.

--seeds trains each bound once per training seed (initialisation, data
order and sampling; `seqlvm train --seed`): seed 0's run is SET/BOUND, as
before, seed S's SET/BOUND-seedS. ordering.md then compares the bounds
over their seeds (the difference of the seed-averaged test bounds, paired
over sequences, beside each seed's own difference and a standard error
from the spread between seeds).

--bounds fivo-qiwae trains FIVO with its proposal on the IWAE (`seqlvm
train --bound fivo --proposal-bound iwae`, Le et al.'s ALT scheme for
AESMC), run SET/fivo-qiwae[-seedS]; ordering.md pairs it with the IWAE-
and FIVO-trained runs, as "FIVO (IWAE q)".

--bounds fivo-warm trains FIVO warm-started from the same set's and
seed's IWAE-trained run (`seqlvm train --init-from OUT/SET/iwae[-seedS]`,
its best checkpoint) at the constant --warm-learning-rate (2e-5), with no
schedule and no KL warm-up (the IWAE run had them), run
SET/fivo-warm[-seedS]; in the same call it waits for that IWAE run to
finish, and it does not start from one that failed or stopped at its time
cap (its starting point could not change later). ordering.md pairs it
with the others as "FIVO (IWAE start)".

--train-particles N trains the IWAE and FIVO runs with N particles instead
of the reference's 4 (the ELBO run keeps 1); the evaluations stay at N = 4
and 16, so the table still compares at the reference's N. Give such runs
their own --out: `seqlvm train` refuses to resume a run with another N.

Rerunning resumes every run from its directory (a run that has stopped
early stays stopped; one at its cap trains --minutes more), and the
evaluations reuse the records already stored. Per run, stopped.json in
--out records the steps, the wall time, whether early stopping fired and
the best validation's step. A SIGTERM (`kill`) or Ctrl-C to this script
is forwarded to every training it is running: each saves a checkpoint at
the step it reached and exits, and the script records it and exits too.
"""

import argparse
import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

from benchlib import command_line  # pylint: disable=g-import-not-at-top
import latent_usage  # pylint: disable=g-import-not-at-top
import numpy as np

from seqlvm import fileio
from seqlvm import interrupts
from seqlvm.run import best as best_lib
from seqlvm.run import records
from seqlvm.run import rundir

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = {"jsb": "jsb.pkl", "nottingham": "nottingham.pkl",
         "musedata": "musedata.pkl", "piano-midi": "piano-midi.de.pkl"}
SIZES = {"jsb": 32, "nottingham": 64, "musedata": 64, "piano-midi": 64}
# Training pieces of at most this many steps (0 = whole sequences, as in the
# reference). Whole, Nottingham's pieces (up to 1788 steps) pad to up to 56
# lengths, each its own XLA compilation: six runs sharing 2 cores had not
# reached step 250 after 8 minutes. MuseData's and Piano-midi.de's (means 467
# and 872 steps) give 131 and 22 updates per epoch whole, too few for a
# 2-core budget. Cut at 256, the cost per timestep is the same (RESULTS.md,
# long pianoroll pieces) and there are at most 8 lengths. Evaluation is
# always on whole sequences.
MAX_LENGTHS = {"jsb": 0, "nottingham": 256, "musedata": 256, "piano-midi": 256}
BOUNDS = ("elbo", "iwae", "fivo")
# The trainings a set's runs may have: each bound, and FIVO with its proposal
# trained on the IWAE (--proposal-bound iwae: `seqlvm train --proposal-bound`,
# Le et al.'s ALT scheme for AESMC), run FIVO-QIWAE.
HYBRID = "fivo-qiwae"
# FIVO warm-started from the same seed's IWAE-trained run (`seqlvm train
# --init-from`), at a constant rate: run FIVO-WARM.
WARM = "fivo-warm"
TRAININGS = BOUNDS + (HYBRID, WARM)
LABELS = {HYBRID: "FIVO (IWAE q)", WARM: "FIVO (IWAE start)"}
# The anchors: the ICLR re-run of FIVO's VRNN setting (N = 5), test nats per
# timestep, as quoted in issue 16.
ANCHORS = {"nottingham": {"elbo": -3.87, "iwae": -3.12, "fivo": -3.07},
           "jsb": {"elbo": -8.69, "iwae": -8.01, "fivo": -7.51},
           "musedata": {"elbo": -7.48, "iwae": -7.45, "fivo": -6.75},
           "piano-midi": {"elbo": -7.99, "iwae": -7.97, "fivo": -7.85}}


def run_name(bound, seed):
  """A run's directory name: BOUND for seed 0 (the runs trained before
  --seeds existed), BOUND-seedS for seed S; BOUND is a training in
  TRAININGS."""
  return bound if seed == 0 else f"{bound}-seed{seed}"


def training_flags(training):
  """(--bound, the extra `seqlvm train` flags) of a training in TRAININGS."""
  if training == HYBRID:
    return "fivo", ["--proposal-bound", "iwae"]
  if training == WARM:
    return "fivo", []
  return training, []


def label(training):
  """A training's name in tables and legends: FIVO, FIVO (IWAE q), ..."""
  return LABELS.get(training, training.upper())


def bound_and_seed(run_dir):
  """(training, seed) of a run directory named by `run_name`."""
  bound, _, seed = os.path.basename(os.path.normpath(run_dir)).partition(
      "-seed")
  return bound, int(seed) if seed else 0


def runs_of(out, name):
  """A set's run directories under OUT: for each training in TRAININGS,
  its seed-0 run and then its other seeds' runs, in seed order."""
  runs = []
  for b in TRAININGS:
    found = [d for d in glob.glob(os.path.join(out, name, f"{b}-seed*"))
             if os.path.isdir(d) and d.rsplit("-seed", 1)[1].isdigit()]
    if os.path.isdir(os.path.join(out, name, b)):
      found.append(os.path.join(out, name, b))
    runs += sorted(found, key=lambda d: bound_and_seed(d)[1])
  return runs


def train_command(args, name, bound, run_dir, seed=0):
  size = SIZES[name] if args.size is None else args.size
  max_length = (MAX_LENGTHS[name] if args.max_length is None
                else args.max_length)
  training = bound
  bound, extra = training_flags(training)
  rate, optional = args.learning_rate, schedule_flags(args) + kl_flags(args)
  if training == WARM:
    # The schedule and the KL warm-up were the IWAE run's: a constant rate.
    extra = extra + ["--init-from", warm_source(args.out, name, seed)]
    rate, optional = args.warm_learning_rate, []
  if args.weight_decay:
    optional += ["--weight-decay", str(args.weight_decay)]
  if args.keep_every:
    optional += ["--keep-every", str(args.keep_every)]
  if seed:
    optional += ["--seed", str(seed)]
  return [sys.executable, "-m", "seqlvm.cli", "train",
          "--data", os.path.join(os.path.abspath(args.data_dir), FILES[name]),
          "--run-dir", run_dir, "--bound", bound, *extra,
          "--num-particles",
          "1" if bound == "elbo" else str(args.train_particles),
          "--batch-size", "4", "--hidden-size", str(size),
          "--latent-size", str(size), "--learning-rate",
          str(rate), "--num-steps", str(args.steps),
          "--valid-every", str(args.valid_every), "--early-stopping",
          str(args.early_stopping), "--checkpoint-every", "500",
          "--max-minutes", str(args.minutes), "--progress-every", "250",
          "--max-length", str(max_length)] + optional


def warm_source(out, name, seed):
  """The run a fivo-warm run of (set, seed) starts from: the IWAE-trained
  run of the same seed."""
  return os.path.join(out, name, run_name("iwae", seed))


def warm_start_step(run):
  """The step of the checkpoint a warm-started run started from (its
  config's init_from), 0 if none."""
  with open(os.path.join(run, "config.json")) as f:
    source = json.load(f).get("init_from") or ""
  return max(rundir.checkpoint_number(source), 0)


def ready(item, pending, running):
  """Whether a pending (set, run) may start: a fivo-warm run waits for
  its IWAE run while that one is pending or running in the same call."""
  name, run = item
  training, seed = bound_and_seed(run)
  source = (name, run_name("iwae", seed))
  return training != WARM or (source not in pending and
                              source not in running)


def warm_blocker(args, name, run, done):
  """Why the fivo-warm run (set, run) may not start now, or None: its IWAE
  run failed, or stopped at its time cap rather than by early stopping or
  the step limit (in this call, or as OUT/stopped.json records it), since a
  warm start cannot change its starting point later. A warm run with
  checkpoints of its own resumes whatever its IWAE run did; one whose IWAE
  run this script never trained is trusted."""
  training, seed = bound_and_seed(run)
  if training != WARM or rundir.checkpoint_files(
      os.path.join(args.out, name, run, "ckpt")):
    return None
  source = run_name("iwae", seed)
  record = done.get((name, source))
  path = os.path.join(args.out, "stopped.json")
  if record is None and os.path.exists(path):
    with open(path) as f:
      record = json.load(f).get(f"{name}/{source}")
  if record is None:
    return None
  if record.get("returncode"):
    return f"{source} failed (returncode {record['returncode']})"
  if not (record.get("early_stopped") or
          record.get("steps", 0) >= args.steps):
    return (f"{source} stopped at its time cap at {record.get('steps')} "
            "updates; rerun to train it on, and the warm start follows once "
            "it has stopped early or reached --steps")
  return None


def schedule_flags(args):
  """`seqlvm train`'s schedule flags: none for the reference's constant
  rate, so that a run trained before they existed resumes unchanged, and
  only those the schedule reads (`seqlvm train` warns of the others)."""
  if args.lr_schedule == "constant":
    return []
  shape = (["--lr-decay-rate", str(args.lr_decay_rate)]
           if args.lr_schedule == "exponential" else
           ["--lr-min-fraction", str(args.lr_min_fraction)])
  return ["--lr-schedule", args.lr_schedule, "--lr-decay-steps",
          str(args.lr_decay_steps)] + shape + [
              "--warmup-steps", str(args.warmup_steps)]


def kl_flags(args):
  """`seqlvm train`'s KL warm-up flags: none without a warm-up (as the
  reference), so that a run trained before they existed resumes
  unchanged."""
  if not args.kl_warmup_steps:
    return []
  return ["--kl-warmup-steps", str(args.kl_warmup_steps),
          "--kl-weight-start", str(args.kl_weight_start)]


def stopped(run_dir, log_path, seconds, offset=0):
  """Where a run stopped: steps, early stopping, the best validation.

  The steps come from the whole log (a call that trains nothing does not
  repeat them), whether early stopping fired from this call's part, from
  `offset` on: a resumed run's log still holds the earlier call's lines.
  """
  with open(log_path, "rb") as f:  # offset counts bytes
    raw = f.read()
  log = raw.decode("utf-8", "replace")
  this_call = raw[offset:].decode("utf-8", "replace")
  best = {}
  if os.path.exists(os.path.join(run_dir, "best.json")):
    with open(os.path.join(run_dir, "best.json")) as f:
      best = json.load(f)
  # A training that ends prints "Trained to step N: ...", one stopped by a
  # signal "Interrupted at step N; saved ...".
  ends = [l for l in log.splitlines()
          if l.startswith(("Trained to step", "Interrupted at step"))]
  steps = int(ends[-1].split()[3].rstrip(":.;")) if ends else None
  return {"steps": steps, "wall_seconds_this_call": round(seconds),
          "early_stopped": "Early stopping at step" in this_call or
                           "has stopped early" in this_call,
          "best_step": best.get("step"), "best_valid": best.get("value")}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sets", nargs="+", default=list(FILES), choices=FILES)
  p.add_argument("--bounds", nargs="+", default=list(BOUNDS),
                 choices=TRAININGS,
                 help="the trainings: each bound, fivo-qiwae (FIVO with "
                 "its proposal trained on the IWAE, `seqlvm train "
                 "--proposal-bound iwae`; twice FIVO's cost per update), or "
                 "fivo-warm (FIVO from the same seed's IWAE-trained run, "
                 "`seqlvm train --init-from`, at --warm-learning-rate) "
                 "[elbo iwae fivo]")
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
                 help="Adam's rate, the peak of a schedule [2e-4: "
                 "run_fivo.py's default]")
  p.add_argument("--warm-learning-rate", type=float, default=2e-5,
                 help="fivo-warm's constant rate (no schedule, no KL "
                 "warm-up) [2e-5: the floor of the cosine from 1e-3 to "
                 "0.02 of it]")
  p.add_argument("--lr-schedule", default="constant",
                 choices=("constant", "exponential", "cosine"),
                 help="the rate's schedule, as `seqlvm train --lr-schedule` "
                 "[constant, as the reference]")
  p.add_argument("--lr-decay-steps", type=int, default=0,
                 help="updates over which the schedule decays (0 = --steps "
                 "after the warm-up); choose it to fit --minutes [0]")
  p.add_argument("--lr-decay-rate", type=float, default=0.1,
                 help="exponential: the factor per --lr-decay-steps [0.1]")
  p.add_argument("--lr-min-fraction", type=float, default=0.0,
                 help="cosine: the final rate as a fraction of the peak [0]")
  p.add_argument("--warmup-steps", type=int, default=0,
                 help="linear warm-up updates before the schedule [0]")
  p.add_argument("--kl-warmup-steps", type=int, default=0,
                 help="KL annealing: updates over which the latent term's "
                 "weight rises to 1, as `seqlvm train --kl-warmup-steps` "
                 "(0 = none, as the reference) [0]")
  p.add_argument("--kl-weight-start", type=float, default=0.0,
                 help="the KL warm-up's first weight [0]")
  p.add_argument("--weight-decay", type=float, default=0.0,
                 help="decoupled weight decay (AdamW), as `seqlvm train "
                 "--weight-decay` (0 = plain Adam, as the reference) [0]")
  p.add_argument("--train-particles", type=int, default=4,
                 help="N for the IWAE- and FIVO-trained runs' training "
                 "(the ELBO trains with 1); evaluation stays at N = 4 and "
                 "16. Give other values their own --out, since a run's N "
                 "cannot change on resume [4, as the reference]")
  p.add_argument("--keep-every", type=int, default=0,
                 help="keep each run's model at every step divisible by "
                 "this (`seqlvm train --keep-every`; RUN/kept, never "
                 "pruned), to compare runs at equal updates with `seqlvm "
                 "eval RUN --checkpoint kept-N`; may be added when a run "
                 "is resumed [0 = off]")
  p.add_argument("--size", type=int, default=None,
                 help="latent and hidden size for every set [32 for JSB, "
                 "64 for the others]")
  p.add_argument("--max-length", type=int, default=None,
                 help="cut training sequences into pieces of at most this "
                 "many steps, for every set (0 = whole) [whole for JSB, 256 "
                 "for the others]")
  p.add_argument("--seeds", nargs="+", type=int, default=None,
                 help="training seeds, one run per training and seed: seed "
                 "0's is SET/BOUND, seed S's SET/BOUND-seedS; with "
                 "--compare-only, compare only these seeds' runs [train: 0; "
                 "compare: every seed's run that exists]")
  p.add_argument("--no-compare", action="store_true",
                 help="train only")
  p.add_argument("--compare-only", action="store_true",
                 help="train nothing: compare each set's existing runs")
  args = p.parse_args()
  print(command_line(), flush=True)
  if args.train_particles < 1:
    p.error(f"--train-particles must be at least 1: {args.train_particles}")
  if args.keep_every < 0:
    p.error(f"--keep-every must be 0 (off) or positive: {args.keep_every}")
  if args.seeds is not None and (any(seed < 0 for seed in args.seeds) or len(
      set(args.seeds)) < len(args.seeds)):
    p.error(f"--seeds must be distinct and nonnegative: {args.seeds}")
  if args.compare_only:
    for name in args.sets:
      compare(args, name, args.seeds)
    return
  pending = [(name, run_name(bound, seed)) for name in args.sets
             for seed in args.seeds or [0] for bound in args.bounds]
  sys.exit(train_all(args, pending))


def train_all(args, pending):
  """Trains the (set, run) pairs in `pending`, --parallel at a time, each in
  a `seqlvm train` subprocess (`train_command`) logging to OUT/SET/RUN.log;
  records where each stopped in OUT/stopped.json and, unless --no-compare,
  compares a set once all of its runs have finished. Returns 0, or 128 plus
  the signal's number where SIGTERM or SIGINT stopped it.

  The trainings run in sessions of their own, so a signal reaches them only
  through this script, once: a `kill` of the script, or Ctrl-C in its
  terminal, is forwarded to each running training, which checkpoints and
  exits; the script waits for them, records them, and exits too. Without
  this, a SIGTERM left the trainings running on with no one to record them.
  """
  expected = {}
  for name, run in pending:
    expected.setdefault(name, []).append(run)
  pending = list(pending)
  running, done = {}, {}
  # Ctrl-C as KeyboardInterrupt even where it was ignored at start-up (a
  # job started with `&` from a script), SIGTERM as interrupts.Terminated.
  interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
  previous = interrupts.catch_sigterm()
  try:
    while pending or running:
      while len(running) < args.parallel:
        startable = [k for k in pending if ready(k, pending, running)]
        if not startable:
          break
        name, run = startable[0]
        pending.remove(startable[0])
        blocker = warm_blocker(args, name, run, done)
        if blocker:
          print(f"{name} {run}: not started: {blocker}.", flush=True)
          expected[name].remove(run)
          continue
        bound, seed = bound_and_seed(run)
        run_dir = os.path.join(args.out, name, run)
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        log_path = os.path.join(args.out, name, f"{run}.log")
        log = open(log_path, "a")  # pylint: disable=consider-using-with
        offset = log.tell()
        command = train_command(args, name, bound, run_dir, seed)
        print(" ".join(command[2:]), flush=True)
        running[name, run] = (subprocess.Popen(
            command, stdout=log, stderr=log, start_new_session=True),
                              log, log_path, run_dir, time.time(), offset)
      time.sleep(5)
      for key in [k for k, v in running.items() if v[0].poll() is not None]:
        _finished(args, key, running.pop(key), done, expected)
  except KeyboardInterrupt as e:
    signum = (signal.SIGTERM if isinstance(e, interrupts.Terminated) else
              signal.SIGINT)
    name = signal.Signals(signum).name
    for key, (process, *_) in running.items():
      print(f"{key[0]} {key[1]}: sending {name}", flush=True)
      process.send_signal(signum)
    # A second signal while they save must not leave them unrecorded.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for key in list(running):
      running[key][0].wait()
      _finished(args, key, running.pop(key), done, expected, compare_set=False)
    print(f"Stopped by {name}; the same command resumes every run from its "
          "checkpoint.", flush=True)
    return 128 + signum
  finally:
    signal.signal(signal.SIGINT, interrupt)
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
  return 0


def _finished(args, key, entry, done, expected, compare_set=True):
  """Records a finished training in OUT/stopped.json and, once every run of
  its set has finished without failing, compares the set."""
  process, log, log_path, run_dir, start, offset = entry
  log.close()
  record = stopped(run_dir, log_path, time.time() - start, offset)
  record["returncode"] = process.returncode
  done[key] = record
  print(f"{key[0]} {key[1]}: {record}", flush=True)
  path = os.path.join(args.out, "stopped.json")
  previous = {}
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
  previous[f"{key[0]}/{key[1]}"] = record
  fileio.write_text(json.dumps(previous, indent=1, sort_keys=True), path)
  runs = expected[key[0]]
  if (not compare_set or args.no_compare or
      any((key[0], r) not in done for r in runs)):
    return
  failed = [r for r in runs if done[key[0], r]["returncode"]]
  if failed:
    print(f"{key[0]}: not compared, since {', '.join(failed)} failed "
          f"(see {os.path.join(args.out, key[0])}/RUN.log)", flush=True)
  else:
    compare(args, key[0])


def compare(args, name, seeds=None):
  """`seqlvm compare` of a set's runs at N = 4 and 16, all three bounds:
  every run that exists (each training; each seed, or those in `seeds`), not
  only those trained by this call, into SET/compare (SET/compare-seeds0-1
  for seeds [0, 1])."""
  runs = [run for run in runs_of(args.out, name)
          if seeds is None or bound_and_seed(run)[1] in seeds]
  out = os.path.join(args.out, name, "compare" if seeds is None else
                     "compare-seeds" + "-".join(map(str, sorted(seeds))))
  command = [sys.executable, "-m", "seqlvm.cli", "compare", *runs,
             "--num-particles", "4", "16", "--out", out, "--no-progress"]
  print(" ".join(command[2:]), flush=True)
  if subprocess.call(command) == 0:
    ordering(runs, out)
    filtering(runs, out)
    curves(runs, out, name)
    latents(runs, out)


def latents(runs, out, samples=8):
  """OUT/latent.md (and .json): each run's single-sample ELBO on the test
  split split into log p(x|z) and KL(q || p) per timestep
  (`latent_usage.py`), which shows a run whose latents have collapsed."""
  # Here, not at the top: seqlvm.run.compare imports TensorFlow, which the
  # script needs only in its training and evaluation subprocesses.
  from seqlvm.run.compare import run_labels  # pylint: disable=g-import-not-at-top
  results = {name: latent_usage.evaluate(run, "test", 16, samples, 0, "auto")
             for name, run in zip(run_labels(runs), runs)}
  path = os.path.join(out, "latent.md")
  fileio.write_text(latent_usage.table(results, "test", samples), path)
  with open(os.path.join(out, "latent.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  print(f"Wrote {path}", flush=True)


def curves(runs, out, name, labels=None):
  """OUT/valid.png: each run's validation bound (its training bound, nats
  per timestep) against the step (a fivo-warm run's from the step it
  started from), the best marked, and the anchors' test
  numbers as dotted lines for scale: one colour per training bound, one
  line style per seed. The y axis spans the curves after their first fifth
  and the anchors drawn, so that where they end can be read.

  labels, one per run, name runs that share a training bound and seed but
  differ in a setting (say, --weight-decay): each then has its own colour
  and that label in the legend."""
  if labels is not None and len(labels) != len(runs):
    raise ValueError(f"{len(labels)} labels for {len(runs)} runs")
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  styles = ("-", "--", "-.", (0, (1, 1)))
  anchors = ANCHORS.get(name, {})
  anchored, tails = set(), []
  for index, run in enumerate(runs):
    bound, seed = bound_and_seed(run)
    record = best_lib.read(run)
    history = record.get("validations") or []
    if not history:
      continue
    steps, values = zip(*history)
    if bound == WARM:  # Drawn from the IWAE step it started at.
      steps = [s + warm_start_step(run) for s in steps]
    tails += values[len(values) // 5:]
    color = f"C{TRAININGS.index(bound)}" if bound in TRAININGS else None
    evaluated = training_flags(bound)[0]
    legend = f"{label(bound)}-trained, valid {evaluated}" + (
        f", seed {seed}" if seed else "")
    if labels is not None:
      color, legend = f"C{index}", f"{legend}, {labels[index]}"
    line, = ax.plot(steps, values, color=color, lw=1,
                    ls=styles[seed % len(styles)], label=legend)
    ax.plot([record["step"]], [record["value"]], "o", color=line.get_color())
    anchor = anchors.get(evaluated)
    if anchor is not None and evaluated not in anchored:
      anchored.add(evaluated)
      ax.axhline(anchor, color=line.get_color(), ls=":", lw=1,
                 label=f"anchor test {evaluated} {anchor}")
  if tails:  # the first fifth of training off the bottom: the end readable
    span = tails + [anchors[b] for b in anchored]  # the anchors drawn only
    low, top = min(span), max(span)
    ax.set_ylim(low - 0.1 * (top - low), top + 0.1 * (top - low))
  ax.set_xlabel("training step")
  ax.set_ylabel("validation nats per timestep")
  ax.set_title(f"{name}: validation curves (o = best)", fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  fileio.make_dirs(out)
  path = os.path.join(out, "valid.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  print(f"Wrote {path}", flush=True)


PAIRS = (("fivo", "iwae"), ("iwae", "elbo"), ("fivo", "elbo"),
         (HYBRID, "iwae"), (HYBRID, "fivo"), (WARM, "iwae"), (WARM, "fivo"))


def best_test_record(run, bound, num_particles):
  """The run's stored test record of `bound` at `num_particles` (seed 0)
  for its best validation checkpoint, or None where the run has no best
  checkpoint or that evaluation has not been stored."""
  step = best_lib.read(run).get("step")
  found = step is not None and records.find(
      run, split="test", checkpoint=f"best/ckpt-{step}", bound=bound,
      num_particles=num_particles, seed=0)
  return found[0] if found else None


def in_se(difference, se):
  """difference / se, NaN where the standard error is 0 or NaN."""
  return difference / se if se > 0 else float("nan")


def ordering(runs, out, bound="fivo", num_particles=4):
  """The targets' ordering as paired differences: each run's best
  checkpoint under the same evaluation (FIVO, N = 4) on the same test
  sequences, `records.difference` of two training bounds' per-sequence
  bounds (nats per timestep, ratio standard error over sequences).

  With several training seeds per bound (runs named by `run_name`), a
  bound's per-sequence bounds are averaged over its seeds first; each row
  also gives the differences seed by seed (seeds both bounds have) and a
  standard error from the spread between seeds: each run's test bound is
  one draw, their variance pooled over the bounds with two or more seeds,
  se = sqrt(pooled (1 / n_a + 1 / n_b)). That one is what says whether a
  bound trains better models, not only whether these models are better.
  Writes OUT/ordering.md and returns its rows (dicts)."""
  values = {}  # training bound -> {seed: record}
  for run in runs:
    found = best_test_record(run, bound, num_particles)
    if found:
      trained, seed = bound_and_seed(run)
      values.setdefault(trained, {})[seed] = found
  per_run = {b: [r["ll_per_t"] for r in recs.values()]
             for b, recs in values.items()}
  spread = [(len(v) - 1, np.var(v, ddof=1)) for v in per_run.values()
            if len(v) > 1]
  pooled = (sum(d * v for d, v in spread) / sum(d for d, _ in spread)
            if spread else float("nan"))
  rows = []
  for a, b in PAIRS:
    if a not in values or b not in values:
      continue
    ra, rb = values[a], values[b]
    try:
      diff = records.difference(records.average(list(ra.values())),
                                records.average(list(rb.values())))
      per_seed = {s: records.difference(ra[s], rb[s])["ll_per_t"]
                  for s in sorted(set(ra) & set(rb))}
    except ValueError as e:
      raise SystemExit(f"{out}: the {a} and {b} records: {e}") from None
    rows.append({"a": a, "b": b, "difference": diff["ll_per_t"],
                 "se": diff["ll_per_t_se"], "seeds_a": sorted(ra),
                 "seeds_b": sorted(rb), "per_seed": per_seed,
                 "seed_se": math.sqrt(pooled * (1 / len(ra) + 1 / len(rb)))})
  several = any(len(v) > 1 for v in values.values())
  title = (f"Paired differences under {bound.upper()} at N = "
           f"{num_particles}, test nats per timestep (± standard error)")
  if not several:
    lines = [title, "", "| runs | difference | ± se | in se |",
             "|---|---|---|---|"]
    lines += [f"| {label(r['a'])}-trained - {label(r['b'])}-trained | "
              f"{r['difference']:+.3f} | {r['se']:.3f} | "
              f"{in_se(r['difference'], r['se']):+.1f} |" for r in rows]
  else:
    lines = [title + ", each bound's per-sequence bounds averaged over its "
             "training seeds; the last two columns: each seed's own paired "
             "difference, and the standard error from the spread between "
             "seeds (pooled over the bounds with two or more; nan where none "
             "has)", "",
             "| runs | seeds | difference | ± se (sequences) | in se | "
             "per seed | ± se (seeds) | in se |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
      seeds = (f"{len(r['seeds_a'])} / {len(r['seeds_b'])}")
      each = ", ".join(f"{s}: {d:+.3f}" for s, d in r["per_seed"].items())
      lines.append(
          f"| {label(r['a'])}-trained - {label(r['b'])}-trained | {seeds} "
          f"| {r['difference']:+.3f} | {r['se']:.3f} | "
          f"{in_se(r['difference'], r['se']):+.1f} | {each} | "
          f"{r['seed_se']:.3f} | {in_se(r['difference'], r['seed_se']):+.1f} |")
  path = os.path.join(out, "ordering.md")
  fileio.write_text("\n".join(lines) + "\n", path)
  print("\n".join(lines) + f"\nWrote {path}", flush=True)
  return rows


def filtering(runs, out, bound="fivo", particle_counts=(4, 16)):
  """OUT/filter.md: how the particle filter fares on each run's best
  checkpoint, from the test records that `seqlvm compare` stored: at each N
  the bound (nats per timestep), the mean ESS / N after each step's
  increment and the fraction of steps at which it resampled, and the
  bound's gain from the first N to the last. A proposal far from its
  model's filtering posterior shows as a low ESS, frequent resampling and a
  large gain with N: such a model can be the better one at 16 particles
  and the worse at 4. Returns the rows (dicts; None where a record is
  missing)."""
  from seqlvm.run.compare import run_labels  # pylint: disable=g-import-not-at-top
  rows = []
  for name, run in zip(run_labels(runs), runs):
    row = {"run": name, "step": best_lib.read(run).get("step")}
    for n in particle_counts:
      found = best_test_record(run, bound, n)
      row[n] = ({"bound": found["ll_per_t"],
                 "ess": found.get("ess_mean_fraction", float("nan")),
                 "resampled": found.get("resampling_rate", float("nan"))}
                if found else None)
    rows.append(row)
  first, last = particle_counts[0], particle_counts[-1]
  header = "| run | step |" + "".join(
      f" {bound.upper()} N = {n} | ESS / N | resampled |"
      for n in particle_counts) + f" gain {first} -> {last} |"
  lines = [f"{bound.upper()}'s filter on the test split, each run's best "
           "validation checkpoint: the bound (nats per timestep), the mean "
           "ESS / N after each step's increment, the fraction of steps "
           "resampled, and the bound's gain with N", "", header,
           "|---|---|" + "---|" * (3 * len(particle_counts) + 1)]
  for r in rows:
    cells = [r["run"], str(r["step"])]
    for n in particle_counts:
      cells += (["n/a"] * 3 if r[n] is None else
                [f"{r[n]['bound']:.3f}", f"{r[n]['ess']:.3f}",
                 f"{r[n]['resampled']:.3f}"])
    cells.append("n/a" if r[first] is None or r[last] is None else
                 f"{r[last]['bound'] - r[first]['bound']:+.3f}")
    lines.append("| " + " | ".join(cells) + " |")
  path = os.path.join(out, "filter.md")
  fileio.write_text("\n".join(lines) + "\n", path)
  print("\n".join(lines) + f"\nWrote {path}", flush=True)
  return rows


if __name__ == "__main__":
  main()
