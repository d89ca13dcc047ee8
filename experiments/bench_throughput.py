"""Benchmark: sequences per second of seqlvm's VRNN + FIVO, and how cost scales.

VRNN with FIVO (multinomial resampling when ESS < N/2), 88-dimensional
binary data, T = 100 steps, Adam. Two parts:

- Throughput grid: batch B = 4, 16, 64 x particles N = 4, 16 x hidden 64 /
  latent 32 and hidden 256 / latent 64. For each, sequences per second (B /
  the median time of one call) of the training step
  (`seqlvm.run.training.make_train_step(..., mode="xla")`: forward,
  backward, Adam) and of the evaluation bound inside a `tf.function`, as a
  graph and XLA-compiled.
- Linearity sweeps at hidden 64 / latent 32, training step only: time per
  step against T (25, 50, 100, 200; B = N = 4), N (2, 4, 8, 16; B = 4,
  T = 100) and B (4, 8, 16, 32; N = 4, T = 100). Each sweep's log-log slope
  is fitted by least squares: 1 means cost linear in that size, less means
  fixed per-call or per-step costs still dominate.

Every configuration is called once untimed (compilation), then timed up to
`--reps` times, its measurements round-robin; the repetitions stop early once
the configuration has taken `--max-seconds-per-config` seconds, compilation
included (one timed call of each measurement is always made), so the run's
length is bounded. Medians are reported. Output: a Markdown table for
experiments/RESULTS.md (printed), a JSON file (`--json`) and a log-log figure
of the sweeps (`--figure`, 3 panels, the slopes in the legends). `--quick`
runs tiny sizes, to check the script.

    .venv/bin/python experiments/bench_throughput.py [--reps 5] \
        [--max-seconds-per-config 60] [--json OUT.json] \
        [--figure experiments/figures/throughput_scaling.png] [--quick]

The full run takes about 15 to 25 minutes on the project's 2-core machine
(the upper end while something else loads it), about half of it XLA
compilation: 15 to 25 s per configuration, one per shape (each T too).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from benchlib import command_line  # pylint: disable=g-import-not-at-top
from benchlib import timed  # pylint: disable=g-import-not-at-top
from seqlvm import quiet  # pylint: disable=g-import-not-at-top

tf = quiet.import_tensorflow()  # without the start-up noise
import tf_keras  # pylint: disable=g-import-not-at-top

from seqlvm import config as config_lib  # pylint: disable=g-import-not-at-top
from seqlvm import models  # pylint: disable=g-import-not-at-top
from seqlvm import shapes  # pylint: disable=g-import-not-at-top
from seqlvm.run import evaluation  # pylint: disable=g-import-not-at-top
from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
from seqlvm.run import training  # pylint: disable=g-import-not-at-top

D = 88
LEARNING_RATE = 1e-4
MEASUREMENTS = ("train", "eval-graph", "eval-xla")

FULL = dict(
    sizes=((64, 32), (256, 64)), batches=(4, 16, 64), particles=(4, 16),
    num_steps=100,
    # The sweeps: (hidden, latent), the base (B, N, T), each swept axis.
    sweep_size=(64, 32), sweep_base=dict(B=4, N=4, T=100),
    sweeps=dict(T=(25, 50, 100, 200), N=(2, 4, 8, 16), B=(4, 8, 16, 32)))
QUICK = dict(
    sizes=((16, 8),), batches=(2,), particles=(2,), num_steps=8,
    sweep_size=(16, 8), sweep_base=dict(B=2, N=2, T=8),
    sweeps=dict(T=(4, 8), N=(2, 4), B=(2, 4)))


class Bench:
  """Builds models, steps and data once per shape, and times them.

  Args:
    reps: most timed calls per measurement.
    max_seconds: the time cap of one configuration, compilation included.
  """

  def __init__(self, reps, max_seconds):
    self.reps = reps
    self.max_seconds = max_seconds
    self._steps = {}
    self.results = {}  # (hidden, latent, B, N, T, measurement) -> dict

  def _pieces(self, hidden, latent, batch_size, num_particles):
    """(model, train step, eval graph, eval xla) of one shape, cached (a
    step traced once serves every T)."""
    key = (hidden, latent, batch_size, num_particles)
    if key not in self._steps:
      config = config_lib.Config(hidden_size=hidden, latent_size=latent,
                                 num_particles=num_particles,
                                 batch_size=batch_size, bound="fivo")
      model = models.VRNN(D, hidden, latent, data_mean=np.full(D, 0.05))
      optimizer = tf_keras.optimizers.Adam(LEARNING_RATE)
      optimizer.build(model.trainable_variables)
      step = training.make_train_step(model, optimizer, config, D,
                                      mode="xla")
      bound_fn = factory.bound_spec(config, "fivo", num_particles,
                                    training=False)

      def evaluate(x, lengths, seed):
        return bound_fn(model, x,
                        shapes.sequence_mask(lengths, tf.shape(x)[0]), seed)

      signature = evaluation.batch_signature(D, batch_size)
      self._steps[key] = (
          step,
          tf.function(evaluate, input_signature=signature),
          tf.function(evaluate, input_signature=signature,
                      jit_compile=True))
    return self._steps[key]

  def measure(self, hidden, latent, batch_size, num_particles, num_steps,
              measurements):
    """Times one configuration; returns {measurement: result dict}."""
    key = (hidden, latent, batch_size, num_particles, num_steps)
    wanted = [m for m in measurements if key + (m,) not in self.results]
    if wanted:
      self._run(key, wanted)
    return {m: self.results[key + (m,)] for m in measurements}

  def _run(self, key, wanted):
    hidden, latent, batch_size, num_particles, num_steps = key
    start = time.perf_counter()
    step, eval_graph, eval_xla = self._pieces(hidden, latent, batch_size,
                                              num_particles)
    rng = np.random.RandomState(0)
    x = tf.constant((rng.rand(num_steps, batch_size, D) < 0.05).astype(
        np.float32))
    lengths = tf.constant([num_steps] * batch_size, tf.int32)
    seed = tf.constant([1, 2], tf.int32)
    fns = {
        "train": lambda: step(x, lengths, seed)[0].numpy(),
        "eval-graph": lambda: eval_graph(x, lengths, seed).numpy(),
        "eval-xla": lambda: eval_xla(x, lengths, seed).numpy(),
    }
    warmup = {m: timed(fns[m])[0] for m in wanted}
    times = {m: [] for m in wanted}
    for rep in range(self.reps):
      if rep and time.perf_counter() - start > self.max_seconds:
        break
      for m in wanted:
        times[m] += timed(fns[m])
    for m in wanted:
      seconds = float(np.median(times[m]))
      self.results[key + (m,)] = dict(
          hidden=hidden, latent=latent, batch_size=batch_size,
          num_particles=num_particles, num_steps=num_steps, measurement=m,
          ms=1e3 * seconds, sequences_per_second=batch_size / seconds,
          reps=len(times[m]), warmup_s=warmup[m],
          times_ms=[1e3 * s for s in times[m]])
    print(f"  hidden {hidden}, B={batch_size}, N={num_particles}, "
          f"T={num_steps}: " + ", ".join(
              f"{m} {self.results[key + (m,)]['ms']:.1f} ms "
              f"(x{len(times[m])}, first call {warmup[m]:.1f} s)"
              for m in wanted) +
          f"; {time.perf_counter() - start:.0f} s", flush=True)


def log_log_slope(values, seconds):
  """The least-squares slope of log(seconds) against log(values)."""
  return float(np.polyfit(np.log(values), np.log(seconds), 1)[0])


def grid_table(rows):
  lines = ["| hidden/latent | B | N | train ms | train seq/s | "
           "eval graph ms | eval graph seq/s | eval xla ms | eval xla seq/s "
           "| reps |", "|---|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    t, g, x = (row[m] for m in MEASUREMENTS)
    lines.append(
        f"| {row['hidden']}/{row['latent']} | {row['batch_size']} | "
        f"{row['num_particles']} | {t['ms']:.1f} | "
        f"{t['sequences_per_second']:.1f} | {g['ms']:.1f} | "
        f"{g['sequences_per_second']:.1f} | {x['ms']:.1f} | "
        f"{x['sequences_per_second']:.1f} | {t['reps']} |")
  return lines


def sweep_table(sweeps, size, base):
  lines = [f"| sweep (hidden {size[0]}/{size[1]}) | values | "
           "train step ms | log-log slope |", "|---|---|---|---|"]
  for axis, sweep in sweeps.items():
    fixed = ", ".join(f"{k}={v}" for k, v in base.items() if k != axis)
    lines.append(
        f"| {axis} ({fixed}) | {', '.join(str(v) for v in sweep['values'])} "
        f"| {', '.join(f'{ms:.1f}' for ms in sweep['ms'])} | "
        f"{sweep['slope']:.2f} |")
  return lines


def plot_sweeps(sweeps, size, base, path):
  """Writes the 3-panel log-log figure of the sweeps to `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  labels = {"T": "sequence length T", "N": "particles N", "B": "batch B"}
  figure, axes = plt.subplots(1, len(sweeps), figsize=(4 * len(sweeps), 3.6),
                              squeeze=False)
  for ax, (axis, sweep) in zip(axes[0], sweeps.items()):
    values = np.asarray(sweep["values"], float)
    ms = np.asarray(sweep["ms"])
    ax.loglog(values, ms, "o", label="measured")
    fit = np.polyfit(np.log(values), np.log(ms), 1)
    ax.loglog(values, np.exp(np.polyval(fit, np.log(values))), "-",
              label=f"fit, slope {sweep['slope']:.2f}")
    # Linear scaling through the first point, for reference.
    ax.loglog(values, ms[0] * values / values[0], ":", color="grey",
              label="slope 1")
    ax.set_xticks(values)
    ax.set_xticklabels([str(int(v)) for v in values])
    ax.minorticks_off()
    fixed = ", ".join(f"{k}={v}" for k, v in base.items() if k != axis)
    ax.set_title(f"{axis} ({fixed})", fontsize=10)
    ax.set_xlabel(labels[axis])
    ax.set_ylabel("training step, ms")
    ax.legend(fontsize=8)
  figure.suptitle(f"seqlvm VRNN + FIVO training step (XLA), hidden "
                  f"{size[0]}/latent {size[1]}", fontsize=11)
  figure.tight_layout()
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  figure.savefig(path, dpi=120)
  plt.close(figure)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=5,
                      help="most timed calls per measurement")
  parser.add_argument("--max-seconds-per-config", type=float, default=60.,
                      help="stop a configuration's repetitions after this "
                      "long (compilation included; one timed call is "
                      "always made)")
  parser.add_argument("--quick", action="store_true",
                      help="tiny sizes, to check the script")
  parser.add_argument("--json", default=None,
                      help="the JSON output (default: the figure's path "
                      "with .json)")
  parser.add_argument("--figure",
                      default="experiments/figures/throughput_scaling.png",
                      help="the log-log PNG of the sweeps")
  args = parser.parse_args()
  if args.reps < 1 or args.max_seconds_per_config <= 0:
    parser.error("--reps must be >= 1 and --max-seconds-per-config > 0")
  settings = QUICK if args.quick else FULL
  json_path = args.json or os.path.splitext(args.figure)[0] + ".json"

  print("$ " + command_line(), flush=True)
  began = time.perf_counter()
  bench = Bench(args.reps, args.max_seconds_per_config)
  grid = []
  print("throughput grid:", flush=True)
  for hidden, latent in settings["sizes"]:
    for batch_size in settings["batches"]:
      for num_particles in settings["particles"]:
        results = bench.measure(hidden, latent, batch_size, num_particles,
                                settings["num_steps"], MEASUREMENTS)
        grid.append(dict(hidden=hidden, latent=latent,
                         batch_size=batch_size, num_particles=num_particles,
                         num_steps=settings["num_steps"], **results))
  print("linearity sweeps:", flush=True)
  hidden, latent = settings["sweep_size"]
  base = settings["sweep_base"]
  sweeps = {}
  for axis, values in settings["sweeps"].items():
    ms = []
    for value in values:
      shape = dict(base, **{axis: value})
      ms.append(bench.measure(hidden, latent, shape["B"], shape["N"],
                              shape["T"], ("train",))["train"]["ms"])
    sweeps[axis] = dict(values=list(values), ms=ms,
                        slope=log_log_slope(values, ms))
  elapsed = time.perf_counter() - began

  print()
  print(f"VRNN + FIVO (ESS < N/2, multinomial), D={D}, "
        f"T={settings['num_steps']}, Adam; tf {tf.__version__}, "
        f"{os.cpu_count()} CPUs. Medians of up to {args.reps} calls after "
        f"one untimed call, at most {args.max_seconds_per_config:g} s per "
        f"configuration; {elapsed / 60:.1f} minutes in all.")
  print()
  for line in grid_table(grid):
    print(line)
  print()
  for line in sweep_table(sweeps, settings["sweep_size"], base):
    print(line)
  plot_sweeps(sweeps, settings["sweep_size"], base, args.figure)
  directory = os.path.dirname(json_path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  with open(json_path, "w") as f:
    json.dump(dict(command=command_line(), quick=args.quick, reps=args.reps,
                   max_seconds_per_config=args.max_seconds_per_config,
                   elapsed_s=elapsed, grid=grid, sweep_size=list(
                       settings["sweep_size"]), sweep_base=base,
                   sweeps=sweeps), f, indent=2)
  print()
  print(f"wrote {args.figure} and {json_path}")


if __name__ == "__main__":
  main()
