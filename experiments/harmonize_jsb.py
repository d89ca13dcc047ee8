"""Harmonisation as a measurable task: log p(lower voices | soprano) on the
JSB Chorales test split.

For each run (by default the VRNNs trained with ELBO, IWAE and FIVO in
runs/harmonize/BOUND, their best validation checkpoints), with the same
particle filter (FIVO's: N particles, resampling when ESS < N/2;
`seqlvm.infer.impute` with no paths kept) and the same seed:

    log p_hat(x)          every entry observed (the FIVO bound itself)
    log p_hat(x_soprano)  the soprano line observed: at each step its top
                          note on and every pitch above it off, the rest free
                          (`seqlvm.run.conditioned.melody_mask`)

and the conditional log-likelihood of the lower voices given the soprano,
log p(x) - log p(x_soprano), in nats per timestep (sums over the split
divided by its timesteps). Both terms are log-estimates of unbiased p_hat's,
so each is biased low by the same kind of Jensen gap; their difference is
an estimate, not a bound. Beside them: the unconditional bound per timestep
and a trivial baseline, the notes' training frequencies given nothing
(independent Bernoullis), scored on the same entries (everything not
observed with the soprano).

    python experiments/harmonize_jsb.py [--runs runs/harmonize/elbo ...] \\
        [--num-particles 4 16] [--seed 0] [--json out.json]

Train the runs first, e.g. (two or three at a time, a time cap each):

    seqlvm train --data ../shared/data/pianorolls/jsb.pkl --bound fivo \\
        --run-dir runs/harmonize/fivo --hidden-size 64 --latent-size 32 \\
        --valid-every 250 --early-stopping 6 --max-minutes 13

Prints the command, then a Markdown table.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from benchlib import command_line  # pylint: disable=g-import-not-at-top

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                            "data", "pianorolls", "jsb.pkl")


def batch(sequences):
  """Time-major x `[T, B, 88]`, mask `[T, B]`, the soprano mask
  `[T, B, 88]` and the baseline's scored entries."""
  from seqlvm.run import conditioned  # pylint: disable=g-import-not-at-top
  steps = max(len(s) for s in sequences)
  x = np.zeros([steps, len(sequences), 88], np.float32)
  mask = np.zeros([steps, len(sequences)], bool)
  soprano = np.zeros_like(x, bool)
  for b, s in enumerate(sequences):
    x[:len(s), b] = s
    mask[:len(s), b] = True
    _, soprano[:len(s), b], _ = conditioned.melody_mask(s)
  return x, mask, soprano


def baseline(sequences, train_mean, soprano, mask):
  """Independent Bernoullis at the training frequencies, scored on the
  entries the soprano leaves free: nats per timestep."""
  p = np.clip(np.asarray(train_mean, np.float64), 1e-6, 1 - 1e-6)
  total = 0.
  for b, s in enumerate(sequences):
    free = ~soprano[:len(s), b]
    log_p = np.where(s > 0.5, np.log(p), np.log1p(-p))
    total += np.sum(log_p[free])
  return total / mask.sum()


def evaluate(run_dir, x, mask, soprano, num_particles, seed):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from seqlvm import infer  # pylint: disable=g-import-not-at-top
  from seqlvm.run import evaluation  # pylint: disable=g-import-not-at-top
  from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
  from seqlvm.run import records  # pylint: disable=g-import-not-at-top
  _, _, model, path = evaluation.load_run(
      run_dir, factory.make_dataset_and_model, lambda m: print(m, flush=True),
      "evaluate")
  model = model.for_evaluation()
  everything = np.broadcast_to(mask[..., np.newaxis], x.shape)
  rows = {}
  for n in num_particles:
    start = time.time()
    full = infer.impute(model, x, everything, n, seed=tf.constant([seed, 1]),
                        num_samples=0, mask=mask).log_marginal.numpy()
    part = infer.impute(model, x, soprano, n, seed=tf.constant([seed, 2]),
                        num_samples=0, mask=mask).log_marginal.numpy()
    steps = mask.sum()
    # The ratio estimator's standard error (sum of the sequences' values
    # over their timesteps), as the evaluation records give it.
    spread = records.summarize(full - part, mask.sum(0))
    rows[n] = {
        "checkpoint": os.path.relpath(path, run_dir),
        "log_p_x": float(full.sum() / steps),
        "log_p_soprano": float(part.sum() / steps),
        "conditional": float((full - part).sum() / steps),
        "conditional_se_over_sequences": float(spread["ll_per_t_se"]),
        "seconds": time.time() - start}
    print(f"{run_dir} N={n}: {rows[n]}", file=sys.stderr, flush=True)
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data", default=DEFAULT_DATA)
  p.add_argument("--runs", nargs="+", default=[
      os.path.join("runs", "harmonize", b) for b in ("elbo", "iwae", "fivo")])
  p.add_argument("--split", default="test")
  p.add_argument("--num-particles", type=int, nargs="+", default=[4])
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", default=None)
  args = p.parse_args()
  print(command_line())
  from seqlvm import data  # pylint: disable=g-import-not-at-top
  rolls = data.load_pianoroll(args.data)
  sequences = [np.asarray(s, np.float32) for s in getattr(rolls, args.split)]
  x, mask, soprano = batch(sequences)
  base = baseline(sequences, rolls.train_mean, soprano, mask)
  results = {"baseline": base, "runs": {}}
  for run_dir in args.runs:
    results["runs"][run_dir] = evaluate(run_dir, x, mask, soprano,
                                        args.num_particles, args.seed)
  print(f"\nJSB {args.split}: {len(sequences)} sequences, {int(mask.sum())} "
        f"timesteps; nats per timestep.\n")
  print("| run (training bound) | checkpoint | N | log p(x) (FIVO) | "
        "log p(soprano) | log p(lower \\| soprano) | se over sequences |")
  print("|---|---|---|---|---|---|---|")
  for run_dir, rows in results["runs"].items():
    for n, r in rows.items():
      print(f"| {os.path.basename(run_dir.rstrip('/'))} | {r['checkpoint']} "
            f"| {n} | {r['log_p_x']:.3f} | {r['log_p_soprano']:.3f} | "
            f"**{r['conditional']:.3f}** | "
            f"{r['conditional_se_over_sequences']:.3f} |")
  print(f"| baseline: training note frequencies | - | - | - | - | "
        f"{base:.3f} | - |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
