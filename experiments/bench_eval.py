"""Benchmark: evaluating a whole test split as a graph and with XLA.

`seqlvm eval` evaluates each bound over a split with one compiled function
per (bound, N): a `tf.function` without XLA ("graph", compiled once, the
default) or with XLA (`seqlvm eval --xla`, compiled once per padded length:
the `--pad-to-multiple` buckets). Each is timed over a whole test split,
compile included ("first pass"), and again with the same function ("warm":
what a second seed at the same bound and N costs), on the VRNN of the
default config (untrained: the cost does not depend on the weights), FIVO
with N = 4, batch 4, every piece whole. Medians over `--reps` fresh
evaluators per mode, the order rotated.

    python experiments/bench_eval.py --reps 3 \\
        --data ../shared/data/pianorolls/jsb.pkl ../shared/data/pianorolls/musedata.pkl

(A third way, a graph loop over time whose step alone is XLA-compiled, so
compiled once for every length, was measured in the same way and removed:
its first pass was 1.2x the graph's on MuseData and its warm pass no faster
than the graph's; experiments/RESULTS.md.)
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

MODES = ("graph", "xla")


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
  parser.add_argument("--reps", type=int, default=1)
  parser.add_argument("--modes", default=",".join(MODES))
  args = parser.parse_args()
  modes = args.modes.split(",")
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
    first = {m: [] for m in modes}
    warm = {m: [] for m in modes}
    per_t = {}
    for rep in range(args.reps):
      for mode in modes[rep % len(modes):] + modes[:rep % len(modes)]:
        evaluator = evaluation.Evaluator(model, config, source.data_size,
                                         xla=(mode == "xla"))
        seconds, result = _pass(evaluator, source, args)
        first[mode].append(seconds)
        warm[mode].append(_pass(evaluator, source, args)[0])
        per_t[mode] = float(result.per_timestep)
        print(f"{os.path.basename(path)} {mode}: first pass {seconds:.1f} s,"
              f" warm {warm[mode][-1]:.1f} s, {per_t[mode]:.4f} nats/step",
              flush=True)
    for mode in modes:
      rows.append(dict(data=os.path.basename(path), sequences=len(lengths),
                       timesteps=int(sum(lengths)), longest=max(lengths),
                       padded_lengths=len(padded), mode=mode,
                       first_s=float(np.median(first[mode])),
                       warm_s=float(np.median(warm[mode])),
                       per_t=per_t[mode]))
  print(f"\nVRNN (default config), {args.bound} N={args.num_particles}, batch "
        f"{args.batch_size}, whole {args.split} split; medians of "
        f"{args.reps}")
  print("| data | sequences | timesteps | longest | padded lengths | mode | "
        "first pass s | vs graph | warm pass s | vs graph | nats/step |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  graph = {(r["data"]): r for r in rows if r["mode"] == "graph"}
  for r in rows:
    g = graph.get(r["data"])
    ratio = (lambda k: f"{g[k] / r[k]:.2f}x") if g else (lambda k: "")
    print(f"| {r['data']} | {r['sequences']} | {r['timesteps']} | "
          f"{r['longest']} | {r['padded_lengths']} | {r['mode']} | "
          f"{r['first_s']:.1f} | {ratio('first_s')} | {r['warm_s']:.1f} | "
          f"{ratio('warm_s')} | {r['per_t']:.4f} |")


if __name__ == "__main__":
  main()
