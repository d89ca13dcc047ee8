"""Benchmark: data-parallel training throughput with tf.distribute.

Sequences per second of seqlvm's training step (VRNN + FIVO, N = 4, ESS <
N/2 multinomial resampling, Adam; `--hidden 256 --latent 64`, T = 100 steps
of 88-dimensional binary data) for:

- none:        one device, `seqlvm.run.training.make_train_step` (what
               `--distribute none` trains with);
- mirrored-k:  `tf.distribute.MirroredStrategy` over k replicas,
               `seqlvm.run.distribute.make_train_step` (what `--distribute
               mirrored` trains with): k GPUs where there are GPUs, else k
               logical CPU devices (`--devices k`) sharing this machine's
               cores;

at `--per-replica` sequences per replica (the global batch is k times
that), XLA-compiled replica steps ("xla", the default of `seqlvm train`)
and plain graphs ("graph"). Each configuration runs in its own process
(logical devices must exist before TensorFlow starts), is timed after
`--warmup` steps (compilation) over `--reps` steps, and the configurations
take turns over `--rounds` rounds so that load on the machine affects all
alike; the median step time over all rounds is reported.

Scaling efficiency of k replicas = throughput(mirrored-k) / (k x
throughput(none)), and the strategy's overhead on one replica =
throughput(mirrored-1) / throughput(none). On a 2-core CPU machine two
logical devices share the same two cores (every op already uses both), so
efficiency well below 1 is expected there; the measure that matters is on
several GPUs.

The input is a fixed batch handed to the replicas as their shares
(`distribute.replica_share`), so the numbers are the step's, not the input
pipeline's.

    .venv/bin/python experiments/bench_distribute.py [--replicas 1,2] \
        [--per-replica 4,32] [--modes xla,graph] [--rounds 2] [--reps 5] \
        [--hidden 256] [--latent 64] [--num-steps 100] [--json out.json]

`--replicas all` means every GPU. Prints the command, then a Markdown table
ready for experiments/RESULTS.md.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from benchlib import command_line  # pylint: disable=g-import-not-at-top
from benchlib import timed  # pylint: disable=g-import-not-at-top

N, D = 4, 88


def measure(replicas, per_replica, mode, hidden, latent, num_steps, warmup,
            reps):
  """One configuration in this process: the step times (seconds)."""
  from seqlvm import quiet  # pylint: disable=g-import-not-at-top
  tf = quiet.import_tensorflow()
  from seqlvm import config as config_lib  # pylint: disable=g-import-not-at-top
  from seqlvm import models  # pylint: disable=g-import-not-at-top
  from seqlvm.run import distribute  # pylint: disable=g-import-not-at-top
  from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
  from seqlvm.run import training  # pylint: disable=g-import-not-at-top

  strategy = None
  if replicas:
    if not tf.config.list_physical_devices("GPU"):
      distribute.configure_devices("mirrored", replicas)
    strategy = distribute.make_strategy("mirrored", replicas)
  k = max(replicas, 1)
  batch = k * per_replica
  config = config_lib.Config(hidden_size=hidden, latent_size=latent,
                             num_particles=N, batch_size=batch, bound="fivo",
                             learning_rate=1e-4)
  rng = np.random.RandomState(0)
  x = tf.constant((rng.rand(num_steps, batch, D) < 0.05).astype(np.float32))
  lengths = tf.constant([num_steps] * batch, tf.int32)
  scope = strategy.scope() if strategy else tf.name_scope("one")
  with scope:
    model = models.VRNN(D, hidden, latent, data_mean=np.full(D, 0.05))
    optimizer, _ = factory.make_optimizer(config, model.trainable_variables)
  if strategy is None:
    step = training.make_train_step(model, optimizer, config, D, mode=mode)
    args = (x, lengths)
  else:
    step = distribute.make_train_step(model, optimizer, config, strategy,
                                      None, mode=mode)

    def share(i):
      return strategy.experimental_distribute_values_from_function(
          lambda c: distribute.replica_share(
              x, lengths, c.replica_id_in_sync_group, k, 1)[i])

    args = (share(0), share(1))
  calls = [0]

  def one():
    bound = step(*args, tf.constant([1, calls[0]], tf.int32))[0]
    calls[0] += 1
    return float(bound)

  first = one()
  for _ in range(warmup - 1):
    one()
  return {"times": timed(one, reps), "first_bound": first,
          "devices": distribute.describe(strategy)}


def run_one(args, replicas, per_replica, mode):
  """`measure` in a fresh process."""
  command = [sys.executable, os.path.abspath(__file__), "--one",
             f"{replicas},{per_replica},{mode}", "--hidden", str(args.hidden),
             "--latent", str(args.latent), "--num-steps", str(args.num_steps),
             "--warmup", str(args.warmup), "--reps", str(args.reps)]
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
       os.environ.get("PYTHONPATH", "")])}
  result = subprocess.run(command, capture_output=True, text=True, env=env,
                          check=False)
  lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
  if result.returncode or not lines:
    raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def table(rows):
  """Markdown: median step time, sequences/s, efficiency against none."""
  out = ["| step | per replica | replicas | global batch | step s (median) "
         "| seq/s | efficiency |", "|---|---|---|---|---|---|---|"]
  base = {(r["mode"], r["per_replica"]): r["seq_per_s"] for r in rows
          if r["replicas"] == 0}
  for r in rows:
    k = max(r["replicas"], 1)
    ref = base.get((r["mode"], r["per_replica"]))
    efficiency = ("1 (reference)" if r["replicas"] == 0 else
                  f"{r['seq_per_s'] / (k * ref):.2f}" if ref else "-")
    name = "none" if r["replicas"] == 0 else f"mirrored-{r['replicas']}"
    out.append(f"| {r['mode']} | {r['per_replica']} | {name} | "
               f"{k * r['per_replica']} | {r['step_s']:.3f} | "
               f"{r['seq_per_s']:.1f} | {efficiency} |")
  return "\n".join(out)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--replicas", default="1,2",
                 help="mirrored replica counts besides one device, or "
                 "'all' (every GPU) [1,2]")
  p.add_argument("--per-replica", default="4,32",
                 help="sequences per replica [4,32]")
  p.add_argument("--modes", default="xla,graph", help="[xla,graph]")
  p.add_argument("--hidden", type=int, default=256, help="[256]")
  p.add_argument("--latent", type=int, default=64, help="[64]")
  p.add_argument("--num-steps", type=int, default=100,
                 help="timesteps per sequence [100]")
  p.add_argument("--warmup", type=int, default=2,
                 help="untimed steps first (compilation) [2]")
  p.add_argument("--reps", type=int, default=5,
                 help="timed steps per process [5]")
  p.add_argument("--rounds", type=int, default=2,
                 help="rounds over the configurations [2]")
  p.add_argument("--json", default=None, help="also write the rows here")
  p.add_argument("--one", default=None, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.one:
    replicas, per_replica, mode = args.one.split(",")
    print("RESULT " + json.dumps(measure(
        int(replicas), int(per_replica), mode, args.hidden, args.latent,
        args.num_steps, args.warmup, args.reps)))
    return
  print(command_line())
  if args.replicas == "all":
    from seqlvm import quiet  # pylint: disable=g-import-not-at-top
    tf = quiet.import_tensorflow()
    gpus = len(tf.config.list_physical_devices("GPU"))
    if not gpus:
      raise SystemExit("--replicas all: this machine has no GPU.")
    counts = sorted({1, gpus})
  else:
    counts = [int(v) for v in args.replicas.split(",")]
  configs = [(k, b, m) for m in args.modes.split(",")
             for b in (int(v) for v in args.per_replica.split(","))
             for k in [0] + counts]
  times = {c: [] for c in configs}
  devices = {}
  for round_ in range(args.rounds):
    for c in configs:
      result = run_one(args, *c)
      times[c] += result["times"]
      devices[c] = result["devices"]
      print(f"round {round_ + 1}/{args.rounds} {c}: median "
            f"{np.median(result['times']):.3f} s/step, first bound "
            f"{result['first_bound']:.3f} ({result['devices']})",
            file=sys.stderr, flush=True)
  rows = []
  for (k, b, m), ts in times.items():
    step = float(np.median(ts))
    rows.append({"replicas": k, "per_replica": b, "mode": m, "step_s": step,
                 "seq_per_s": max(k, 1) * b / step, "times": ts,
                 "devices": devices[k, b, m]})
  print(table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
