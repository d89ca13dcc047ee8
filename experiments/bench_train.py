"""Benchmark: VRNN training step and evaluation sweep, eager vs compiled vs XLA.

VRNN with FIVO, N = 4 particles, batch 4, T = 100 steps, 88-dimensional
binary data, at hidden 64 / latent 32 and hidden 256 / latent 64. Three
variants of the same code:

- eager:       no tf.function at all; every op runs eagerly, step by step
- python-loop: a Python loop over time steps calling one compiled
               (tf.function) SMC step each, under a GradientTape: the usual
               per-timestep baseline
- graph:       the whole sweep (tf.while_loop) in one tf.function, no XLA
- xla:         the same with jit_compile=True

Each is timed for a training step (forward, backward, Adam) and an evaluation
sweep (forward only). A 2048 x 2048 float32 matmul is timed in the same run;
every variant's achieved GFLOP/s (dense-layer FLOPs counted analytically: the
particle loop's layers for all N*B rows and T steps, plus the per-batch input
encoder; a training step counted as 3x the forward FLOPs) is reported as a
fraction of that matmul rate, with its speed-up over eager.

    python experiments/bench_train.py [--reps 10] [--json out.json]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top

from seqlvm import config as config_lib  # pylint: disable=g-import-not-at-top
from seqlvm import models  # pylint: disable=g-import-not-at-top
from seqlvm.run import factory
from seqlvm.run import training
from seqlvm import shapes  # pylint: disable=g-import-not-at-top
from seqlvm import smc  # pylint: disable=g-import-not-at-top

T, B, N, D = 100, 4, 4, 88


def timeit(fn, reps, warmup=1):
  for _ in range(warmup):
    out = fn()
  tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    out = fn()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t,
                          out)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def matmul_rate(reps):
  a = tf.random.normal([2048, 2048])
  b = tf.random.normal([2048, 2048])
  f = tf.function(lambda: tf.matmul(a, b))
  seconds = timeit(f, reps, warmup=2)
  return 2 * 2048 ** 3 / seconds / 1e9, seconds


def small_matmul_rate(m, k, n, reps):
  a = tf.random.normal([m, k])
  b = tf.random.normal([k, n])
  f = tf.function(lambda: tf.matmul(a, b), jit_compile=True)
  return 2 * m * k * n / timeit(f, reps, warmup=5) / 1e9


def dense_flops(module):
  """2 x in x out for every weight matrix of `module`: FLOPs per row."""
  return sum(2 * int(v.shape[0]) * int(v.shape[1])
             for v in module.trainable_variables if v.shape.rank == 2)


def vrnn_flops(model, num_steps, batch_size, num_particles):
  """Dense-layer FLOPs (2 per multiply-add) of one VRNN sweep.

  Per particle row and step: the LSTM on [phi_z, h], the prior, the
  proposal (less its precomputed phi_x block), phi_z and the emission; per
  sequence row and step (`prepare`): phi_x and the two projections of it.
  """
  h, rows = model.hidden_size, num_steps * batch_size
  loop = (2 * 2 * h * 4 * h + dense_flops(model.prior) +
          dense_flops(model.proposal) - 2 * h * h +
          dense_flops(model.z_encoder) + dense_flops(model.emission))
  prepared = dense_flops(model.x_encoder) + 2 * h * 4 * h + 2 * h * h
  return rows * num_particles * loop + rows * prepared


def bench_size(hidden, latent, reps, eager_reps):
  config = config_lib.Config(hidden_size=hidden, latent_size=latent,
                             num_particles=N, batch_size=B, bound="fivo")
  rng = np.random.RandomState(0)
  mean = np.full(D, 0.05)
  x = tf.constant((rng.rand(T, B, D) < 0.05).astype(np.float32))
  lengths = tf.constant([T] * B, tf.int32)
  seed = tf.constant([1, 2], tf.int32)
  model = models.VRNN(D, hidden, latent, data_mean=mean)
  forward_flops = vrnn_flops(model, T, B, N)
  rows = []
  bound_fn = factory.bound_spec(config, "fivo", N)

  def eval_step(x, lengths, seed):
    return bound_fn(model, x, shapes.sequence_mask(lengths, T), seed)

  def python_loop_sweep(x, lengths, seed):
    return smc.smc(model, x, shapes.sequence_mask(lengths, T),
                   num_particles=N,
                   resample_criterion_fn=smc.criteria.ess_below_threshold(),
                   resample_fn=smc.resampling.multinomial, seed=seed,
                   loop="python").log_marginal

  def python_loop_train_step(optimizer):
    def step(x, lengths, seed):
      with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(python_loop_sweep(x, lengths, seed)) / (T * B)
      grads = tape.gradient(loss, model.trainable_variables)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      return loss
    return step

  for mode in ("eager", "python-loop", "graph", "xla"):
    optimizer = tf_keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    if mode == "python-loop":
      step = python_loop_train_step(optimizer)
      evaluate = python_loop_sweep
    else:
      step = training.make_train_step(model, optimizer, config, D, mode=mode)
      evaluate = eval_step if mode == "eager" else tf.function(
          eval_step, jit_compile=(mode == "xla"))
    r = eager_reps if mode == "eager" else reps
    train_s = timeit(lambda: step(x, lengths, seed), r)
    eval_s = timeit(lambda: evaluate(x, lengths, seed), r)
    rows.append(dict(hidden=hidden, latent=latent, mode=mode,
                     train_ms=1e3 * train_s, eval_ms=1e3 * eval_s,
                     train_gflops=3 * forward_flops / train_s / 1e9,
                     eval_gflops=forward_flops / eval_s / 1e9))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=10)
  parser.add_argument("--eager-reps", type=int, default=2)
  parser.add_argument("--json", default=None, help="also write rows here")
  args = parser.parse_args()
  mm_gflops, mm_s = matmul_rate(args.reps)
  rows = []
  for hidden, latent in ((64, 32), (256, 64)):
    rows += bench_size(hidden, latent, args.reps, args.eager_reps)
  mm_after, _ = matmul_rate(args.reps)
  eager = {(r["hidden"]): r for r in rows if r["mode"] == "eager"}
  loop = {(r["hidden"]): r for r in rows if r["mode"] == "python-loop"}
  print(f"matmul 2048x2048 float32: {mm_gflops:.1f} GFLOP/s before, "
        f"{mm_after:.1f} after the runs ({1e3 * mm_s:.1f} ms)")
  print(f"VRNN + FIVO, N={N}, B={B}, T={T}, D={D}; tf {tf.__version__}, "
        f"{os.cpu_count()} CPUs")
  print("| hidden/latent | variant | train step ms | train GFLOP/s | "
        "train % of matmul | train speed-up vs eager / vs python-loop | "
        "eval ms | eval GFLOP/s | eval speed-up vs eager / vs python-loop |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    e, p = eager[r["hidden"]], loop[r["hidden"]]
    r["train_speedup"] = e["train_ms"] / r["train_ms"]
    r["train_speedup_vs_loop"] = p["train_ms"] / r["train_ms"]
    r["eval_speedup"] = e["eval_ms"] / r["eval_ms"]
    r["eval_speedup_vs_loop"] = p["eval_ms"] / r["eval_ms"]
    r["train_frac_matmul"] = r["train_gflops"] / mm_gflops
    print(f"| {r['hidden']}/{r['latent']} | {r['mode']} | "
          f"{r['train_ms']:.1f} | {r['train_gflops']:.1f} | "
          f"{100 * r['train_frac_matmul']:.0f}% | "
          f"{r['train_speedup']:.1f}x / {r['train_speedup_vs_loop']:.1f}x | "
          f"{r['eval_ms']:.1f} | {r['eval_gflops']:.1f} | "
          f"{r['eval_speedup']:.1f}x / {r['eval_speedup_vs_loop']:.1f}x |")
  # The ceiling for this model's shapes: one step's largest matmul alone.
  for hidden in (64, 256):
    gflops = small_matmul_rate(N * B, 2 * hidden, 4 * hidden, args.reps * 20)
    print(f"ceiling: one [{N * B}, {2 * hidden}] x [{2 * hidden}, "
          f"{4 * hidden}] matmul (the LSTM step) runs at {gflops:.1f} GFLOP/s "
          f"= {100 * gflops / mm_gflops:.0f}% of the large matmul")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(matmul_gflops=mm_gflops, rows=rows), f, indent=2)


if __name__ == "__main__":
  main()
