"""Benchmark: WaveNet sampling with per-layer caches vs recomputing the stack.

`WaveNet.sample(method="cached")` runs the stack's single-step pass with a
queue of past activations per layer (Paine et al. 2016): O(T x layers).
`method="naive"` reruns the whole causal stack over the generated prefix at
every step: O(T^2 x layers). Both run as one `tf.while_loop` inside a
`tf.function` (no XLA: the naive prefix has a dynamic length), traced once
per method before timing (T is a tensor argument, so one trace serves every
length), and give the same samples for the same seed (checked here). An
extra column times the cached sampler compiled with XLA.

Naive sampling at T = 10,000 takes many minutes, so the naive method is
timed at doubling prefix lengths (and at the target lengths) while the
predicted time of the next run fits in what is left of
`--max-naive-seconds`; the targets it did not reach are extrapolated with a
least-squares fit t(T) = a + b T + c T^2 to the measured naive times
(relative residuals), and the table marks each number measured or
extrapolated. The pure T^2 scaling of the longest measured run is printed
as a cross-check.

    python experiments/bench_wavenet_sampling.py [--max-naive-seconds 240]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from seqlvm.models import wavenet  # pylint: disable=g-import-not-at-top


def timed(fn, *args):
  start = time.perf_counter()
  out = fn(*args).numpy()
  return time.perf_counter() - start, out


def quadratic_fit(lengths, seconds):
  """a, b, c of t = a + b T + c T^2, least squares on relative residuals."""
  lengths, seconds = np.asarray(lengths, float), np.asarray(seconds, float)
  design = np.stack([np.ones_like(lengths), lengths, lengths ** 2], axis=1)
  coef, *_ = np.linalg.lstsq(design / seconds[:, None], np.ones_like(seconds),
                             rcond=None)
  return coef


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 10000])
  parser.add_argument("--batch-size", type=int, default=4)
  parser.add_argument("--channels", type=int, default=32)
  parser.add_argument("--layers", type=int, default=10,
                      help="dilations 1, 2, ..., 2**(layers - 1)")
  parser.add_argument("--data-size", type=int, default=88)
  parser.add_argument("--emission", default="bernoulli",
                      choices=("bernoulli", "gaussian"))
  parser.add_argument("--reps", type=int, default=3,
                      help="repetitions of each cached run (median)")
  parser.add_argument("--max-naive-seconds", type=float, default=240.,
                      help="total time allowed for the naive runs")
  parser.add_argument("--min-naive-length", type=int, default=125,
                      help="the first (shortest) naive prefix timed")
  parser.add_argument("--no-xla", dest="xla", action="store_false",
                      help="skip the extra XLA-compiled cached column")
  parser.add_argument("--json", default=None, help="also write results here")
  args = parser.parse_args()

  dilations = tuple(2 ** i for i in range(args.layers))
  model = wavenet.WaveNet(args.data_size, channels=args.channels,
                          dilations=dilations, emission=args.emission,
                          data_mean=np.full(args.data_size, 0.1)
                          if args.emission == "bernoulli" else None)
  seed = tf.constant([1, 2], tf.int32)
  samplers = {
      method: tf.function(lambda n, m=method: model.sample(
          n, args.batch_size, seed=seed, method=m))
      for method in wavenet.SAMPLING_METHODS}
  for fn in samplers.values():  # Trace once (a dynamic T) and warm up.
    fn(tf.constant(16)).numpy()
  targets = sorted(set(args.lengths))

  cached, cached_samples, cached_xla = {}, {}, {}
  for length in targets:
    runs = [timed(samplers["cached"], tf.constant(length))
            for _ in range(args.reps)]
    cached[length] = float(np.median([s for s, _ in runs]))
    cached_samples[length] = runs[0][1]
    if args.xla:
      # XLA needs a static T: one compile per length, excluded from timing.
      fn = tf.function(lambda n=length: model.sample(
          n, args.batch_size, seed=seed, method="cached"), jit_compile=True)
      fn().numpy()
      cached_xla[length] = float(np.median([timed(fn)[0]
                                            for _ in range(args.reps)]))

  # Naive: doubling prefixes (and the targets) while the next one fits.
  schedule = sorted(set(
      [args.min_naive_length * 2 ** k for k in range(20)
       if args.min_naive_length * 2 ** k < max(targets)] + targets))
  naive, spent, same = {}, 0., {}
  for length in schedule:
    if len(naive) >= 3:
      a, b, c = quadratic_fit(list(naive), list(naive.values()))
      predicted = a + b * length + c * length ** 2
    elif naive:
      last = max(naive)
      predicted = naive[last] * (length / last) ** 2
    else:
      predicted = 0.
    if spent + predicted > args.max_naive_seconds:
      break
    seconds, x = timed(samplers["naive"], tf.constant(length))
    naive[length] = seconds
    spent += seconds
    if length in cached_samples:
      same[length] = bool(np.array_equal(x, cached_samples[length])) if (
          args.emission == "bernoulli") else float(
              np.abs(x - cached_samples[length]).max())

  measured = sorted(naive)
  coef = quadratic_fit(measured, [naive[t] for t in measured]) if len(
      measured) >= 3 else None
  rows = []
  for length in targets:
    if length in naive:
      seconds, source = naive[length], "measured"
    elif coef is not None:
      seconds = float(coef[0] + coef[1] * length + coef[2] * length ** 2)
      source = "extrapolated (quadratic fit)"
    else:
      seconds, source = float("nan"), "not measured (raise the budget)"
    rows.append(dict(T=length, cached_s=cached[length], naive_s=seconds,
                     ratio=seconds / cached[length], naive_source=source,
                     cached_us_per_step=1e6 * cached[length] / length,
                     cached_xla_s=cached_xla.get(length, float("nan"))))

  print(f"WaveNet sampling: B={args.batch_size}, D={args.data_size} "
        f"({args.emission}), channels={args.channels}, {args.layers} layers, "
        f"dilations 1..{dilations[-1]} (receptive field "
        f"{model.receptive_field}); tf {tf.__version__}, {os.cpu_count()} "
        f"CPUs; tf.function, no XLA")
  print(f"cached: median of {args.reps} runs, all measured; naive: one run "
        "each; the last column (extra) is the cached sampler compiled with "
        "XLA (jit_compile, compile time excluded)")
  print()
  print("| T | cached s | cached us/step | naive s | naive/cached | naive | "
        "cached, XLA s |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['T']:,} | {r['cached_s']:.2f} | "
          f"{r['cached_us_per_step']:.0f} | {r['naive_s']:.1f} | "
          f"{r['ratio']:.0f}x | {r['naive_source']} | "
          f"{r['cached_xla_s']:.2f} |")
  print()
  print("naive runs measured (T: seconds): " + ", ".join(
      f"{t}: {naive[t]:.2f}" for t in measured) + f" ({spent:.0f} s in all, "
      f"budget {args.max_naive_seconds:.0f} s)")
  if coef is not None:
    fitted = [coef[0] + coef[1] * t + coef[2] * t ** 2 for t in measured]
    worst = max(abs(f / naive[t] - 1.) for f, t in zip(fitted, measured))
    print(f"quadratic fit to them: t = {coef[0]:.3g} {coef[1]:+.3g} T "
          f"{coef[2]:+.3g} T^2 (worst relative residual {100 * worst:.1f}%)")
    longest = measured[-1]
    for length in targets:
      if length not in naive:
        print(f"cross-check: pure T^2 scaling of the T={longest} run gives "
              f"{naive[longest] * (length / longest) ** 2:.0f} s at "
              f"T={length}")
  for length, value in same.items():
    print(f"T={length}: cached and naive samples "
          + (("identical" if value else "DIFFER") if isinstance(value, bool)
             else f"differ by at most {value:.2g}"))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(rows=rows, naive_measured=naive, args=vars(args)), f,
                indent=2)


if __name__ == "__main__":
  main()
