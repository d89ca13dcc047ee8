"""Benchmark: the public bounds called from Python, compiled vs eager.

`seqlvm.bounds.fivo(model, x, num_particles=16, seed=...)` as the README
shows it, on a VRNN (hidden 64, latent 32) and 88-dimensional binary data,
T = 100, batch 4: the first call (which traces the cached graph), later calls
with new seeds (no retracing), the same call with `compiled=False` (eager, op
by op), and a loop over `--seeds` seeds (the obvious check of unbiasedness).
Medians over `--reps` calls; the ratio eager / compiled is the speed-up a
user sees.

    python experiments/bench_bounds.py [--reps 5] [--seeds 100]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from seqlvm import bounds  # pylint: disable=g-import-not-at-top
from seqlvm import models  # pylint: disable=g-import-not-at-top
from seqlvm.smc import filter as filter_lib  # pylint: disable=g-import-not-at-top

T, B, D, N = 100, 4, 88, 16


def _seconds(fn):
  start = time.perf_counter()
  fn().numpy()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--eager-reps", type=int, default=3)
  parser.add_argument("--seeds", type=int, default=100)
  args = parser.parse_args()
  rng = np.random.RandomState(0)
  x = tf.constant((rng.rand(T, B, D) < 0.05).astype(np.float32))
  model = models.VRNN(D, hidden_size=64, latent_size=32,
                      data_mean=np.full(D, 0.05))

  def call(seed, compiled=True, xs=x):
    return bounds.fivo(model, xs, num_particles=N, seed=(seed, 1),
                       compiled=compiled)

  first = _seconds(lambda: call(0))
  compiled = float(np.median([_seconds(lambda s=s: call(s))
                              for s in range(1, args.reps + 1)]))
  other_shape = _seconds(lambda: call(99, xs=x[:60, :3]))
  eager = float(np.median([_seconds(lambda s=s: call(s, compiled=False))
                           for s in range(args.eager_reps)]))
  traces = filter_lib.trace_count()
  start = time.perf_counter()
  values = np.stack([call(s).numpy() for s in range(args.seeds)])
  loop = time.perf_counter() - start
  assert filter_lib.trace_count() == traces, "a new seed retraced"
  print(f"VRNN hidden 64 / latent 32, FIVO N={N}, T={T}, B={B}, D={D}; "
        f"tf {tf.__version__}, {os.cpu_count()} CPUs")
  print("| call | seconds |")
  print("|---|---|")
  print(f"| first call (traces the graph) | {first:.2f} |")
  print(f"| later calls, new seeds (median of {args.reps}) | {compiled:.3f} |")
  print(f"| a new batch size and length (60 x 3), no retrace | "
        f"{other_shape:.3f} |")
  print(f"| compiled=False, eager (median of {args.eager_reps}) | "
        f"{eager:.2f} |")
  print(f"| {args.seeds} seeds in a loop | {loop:.1f} |")
  print(f"eager / compiled: {eager / compiled:.0f}x; traces: "
        f"{filter_lib.trace_count()}; mean bound over seeds "
        f"{values.mean():.1f} nats per sequence")


if __name__ == "__main__":
  main()
