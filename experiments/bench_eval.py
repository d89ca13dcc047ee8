"""Benchmark: evaluating a whole test split as a graph and with XLA.

`seqlvm eval` evaluates each bound over a split with one compiled function
per (bound, N); XLA compiles it once per padded length (the length buckets
of `--pad-to-multiple` keep these few), a graph without XLA once. This times
a whole test split, compile included, for each, on the VRNN of the default
config (untrained: the cost does not depend on the weights), FIVO with
N = 4, batch 4, every piece whole, and repeats the pass (the warm cost: a
second bound or seed at the same N reuses the compiled function). Medians
over `--reps` fresh evaluators per mode, alternating the order.

    python experiments/bench_eval.py \\
        --data ../shared/data/pianorolls/jsb.pkl ../shared/data/pianorolls/musedata.pkl
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top


def _pass(evaluator, source, args):
  start = time.perf_counter()
  result = evaluator(source, args.split, args.bound, args.num_particles,
                     args.batch_size, seed=0)
  return time.perf_counter() - start, result


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", nargs="+", required=True)
  parser.add_argument("--split", default="test")
  parser.add_argument("--bound", default="fivo")
  parser.add_argument("--num-particles", type=int, default=4)
  parser.add_argument("--batch-size", type=int, default=4)
  parser.add_argument("--reps", type=int, default=2)
  args = parser.parse_args()
  from seqlvm import data  # pylint: disable=g-import-not-at-top
  from seqlvm.config import Config  # pylint: disable=g-import-not-at-top
  from seqlvm.run import evaluation  # pylint: disable=g-import-not-at-top
  from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
  rows = []
  for path in args.data:
    source = data.open_source(path)
    config = Config(data=path, batch_size=args.batch_size)
    model = factory.build_model(config, source.data_size, source.train_mean,
                                emission="bernoulli")
    lengths = [len(s) for s in source.sequences(args.split)]
    padded = {int(x.shape[0]) for x, _, _ in source.eval_dataset(
        args.split, args.batch_size, pad_to_multiple=config.pad_to_multiple)}
    times = {False: [], True: []}
    warm = {False: [], True: []}
    values = {}
    for rep in range(args.reps):
      for xla in ((False, True) if rep % 2 == 0 else (True, False)):
        evaluator = evaluation.Evaluator(model, config, source.data_size,
                                         xla=xla)
        seconds, result = _pass(evaluator, source, args)
        times[xla].append(seconds)
        warm[xla].append(_pass(evaluator, source, args)[0])
        values[xla] = result
    per_t = {xla: float(values[xla].per_timestep) for xla in values}
    row = dict(data=os.path.basename(path), sequences=len(lengths),
               timesteps=int(sum(lengths)), longest=max(lengths),
               compiles=len(padded),
               graph_s=float(np.median(times[False])),
               xla_s=float(np.median(times[True])),
               graph_warm_s=float(np.median(warm[False])),
               xla_warm_s=float(np.median(warm[True])),
               graph_per_t=per_t[False], xla_per_t=per_t[True])
    rows.append(row)
    print(row, flush=True)
  print(f"\nVRNN (default config), {args.bound} N={args.num_particles}, batch "
        f"{args.batch_size}, whole {args.split} split; medians of "
        f"{args.reps}")
  print("| data | sequences | timesteps | longest | padded lengths (XLA "
        "compiles) | graph s | XLA s | graph / XLA | warm graph s | warm XLA "
        "s | warm graph / XLA | nats/step graph | nats/step XLA |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['data']} | {r['sequences']} | {r['timesteps']} | "
          f"{r['longest']} | {r['compiles']} | {r['graph_s']:.1f} | "
          f"{r['xla_s']:.1f} | {r['graph_s'] / r['xla_s']:.2f}x | "
          f"{r['graph_warm_s']:.1f} | {r['xla_warm_s']:.1f} | "
          f"{r['graph_warm_s'] / r['xla_warm_s']:.2f}x | "
          f"{r['graph_per_t']:.4f} | {r['xla_per_t']:.4f} |")


if __name__ == "__main__":
  main()
