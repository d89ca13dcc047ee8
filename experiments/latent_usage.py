"""How much the latents carry: the ELBO's two terms on a split, per run.

The single-sample ELBO splits into a reconstruction term and the KL of the
proposal from the prior, summed over a sequence's steps:

    ELBO = E_q[sum_t log p(x_t | z_t, .)] - E_q[sum_t KL_t],
    KL_t = E_q[log q(z_t | .) - log p(z_t | .)]

A model whose latents have collapsed onto the deterministic path (the LSTM)
has KL near zero: its proposal is its prior, z carries nothing about x, and
the emission has learned to ignore it. Every term here is a Monte Carlo
estimate from the model's own `prepare` / `initial_state` / `step` (the
sweep's contract): `--samples` independent proposal paths per sequence, one
particle each, no resampling, padded steps adding nothing; the KL term is
the mean of log q - log p at the drawn z (unbiased for the KL, and it works
for any latent the model proposes).

Reported per run (its best validation checkpoint unless --checkpoint), in
nats per timestep over the split (sums over sequences divided by their
timesteps), with the standard error over sequences of the ratio estimator:

    elbo        the single-sample ELBO
    log p(x|z)  the reconstruction term
    kl          the KL term (>= 0 in expectation)

    python experiments/latent_usage.py --runs runs/reproduce/jsb/elbo \\
        runs/reproduce/jsb/iwae runs/reproduce/jsb/fivo [--split test] \\
        [--samples 8] [--seed 0] [--json out.json]

Prints the command, then a Markdown table.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from benchlib import command_line  # pylint: disable=g-import-not-at-top


def terms(model, x, mask, samples, seed):
  """Per-sequence sums of log p(x|z) and log q - log p over real steps,
  averaged over `samples` proposal paths: two float64 `[B]` arrays."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  batch = x.shape[1]
  # The samples ride in the batch: rows s*B + b, sample-major.
  x_all = tf.constant(np.tile(x, [1, samples, 1]), model.dtype)
  mask_all = tf.constant(np.tile(mask, [1, samples]))

  @tf.function
  def sweep(x_all, mask_all):
    context = model.prepare(x_all, mask_all)
    rows = tf.shape(x_all)[1]

    def body(t, state, recon, kl):
      context_t = tf.nest.map_structure(lambda c: c[t], context)
      out = model.step(state, context_t, x_all[t],
                       tf.random.experimental.stateless_fold_in(seed, t))
      real = mask_all[t]
      state = tf.nest.map_structure(
          lambda new, old: tf.where(
              tf.reshape(real, [-1] + [1] * (len(new.shape) - 1)), new, old),
          out.state, state)
      zero = tf.zeros_like(out.log_p_z)
      recon += tf.where(real, out.log_p_x_given_z, zero)
      kl += tf.where(real, out.log_q_z - out.log_p_z, zero)
      return t + 1, state, recon, kl

    zeros = tf.zeros([rows], model.dtype)
    _, _, recon, kl = tf.while_loop(
        lambda t, *_: t < tf.shape(x_all)[0], body,
        (0, model.initial_state(rows), zeros, zeros))
    return recon, kl

  seed = tfp.random.sanitize_seed(seed, salt="latent_usage")
  recon, kl = sweep(x_all, mask_all)
  shape = [samples, batch]
  return (np.reshape(recon.numpy(), shape).mean(0).astype(np.float64),
          np.reshape(kl.numpy(), shape).mean(0).astype(np.float64))


def batch(sequences):
  """Time-major x `[T, B, D]` and mask `[T, B]` of whole sequences."""
  steps = max(len(s) for s in sequences)
  x = np.zeros([steps, len(sequences), sequences[0].shape[-1]], np.float32)
  mask = np.zeros([steps, len(sequences)], bool)
  for b, s in enumerate(sequences):
    x[:len(s), b] = s
    mask[:len(s), b] = True
  return x, mask


def evaluate(run_dir, split, samples, seed, checkpoint):
  from seqlvm.run import evaluation  # pylint: disable=g-import-not-at-top
  from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
  from seqlvm.run import records  # pylint: disable=g-import-not-at-top
  _, dataset, model, path = evaluation.load_run(
      run_dir, factory.make_dataset_and_model, lambda m: print(m, flush=True),
      "measure", checkpoint=checkpoint)
  model = model.for_evaluation()
  x, mask = batch([np.asarray(s, np.float32)
                   for s in dataset.sequences(split)])
  start = time.time()
  recon, kl = terms(model, x, mask, samples, seed)
  lengths = mask.sum(0)
  row = {"checkpoint": os.path.relpath(path, run_dir)}
  for name, values in (("elbo", recon - kl), ("recon", recon), ("kl", kl)):
    summary = records.summarize(values, lengths)
    row[name] = float(summary["ll_per_t"])
    row[name + "_se"] = float(summary["ll_per_t_se"])
  row["seconds"] = time.time() - start
  print(f"{run_dir}: {row}", file=sys.stderr, flush=True)
  return row


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs", nargs="+", required=True)
  p.add_argument("--split", default="test", choices=("train", "valid",
                                                     "test"))
  p.add_argument("--samples", type=int, default=8,
                 help="proposal paths per sequence [8]")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--checkpoint", default="auto",
                 help="auto (best validation), best, latest or ckpt-N [auto]")
  p.add_argument("--json", default=None)
  args = p.parse_args()
  if args.samples < 1:
    p.error(f"--samples must be at least 1, got {args.samples}")
  print(command_line(), flush=True)
  results = {}
  for run_dir in args.runs:
    results[run_dir] = evaluate(run_dir, args.split, args.samples, args.seed,
                                args.checkpoint)
  print(f"\n{args.split}: nats per timestep (± se over sequences), "
        f"{args.samples} proposal paths per sequence.\n")
  print("| run | checkpoint | ELBO | log p(x\\|z) | KL(q \\|\\| p) |")
  print("|---|---|---|---|---|")
  for run_dir, r in results.items():
    print(f"| {run_dir} | {r['checkpoint']} | {r['elbo']:.3f} ± "
          f"{r['elbo_se']:.3f} | {r['recon']:.3f} ± {r['recon_se']:.3f} | "
          f"**{r['kl']:.3f}** ± {r['kl_se']:.3f} |")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
