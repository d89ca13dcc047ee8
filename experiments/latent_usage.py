"""How much the latents carry: the ELBO's two terms on a split, per run.

The single-sample ELBO splits into a reconstruction term and the KL of the
proposal from the prior, summed over a sequence's steps:

    ELBO = E_q[sum_t log p(x_t | z_t, .)] - E_q[sum_t KL_t],
    KL_t = E_q[log q(z_t | .) - log p(z_t | .)]

A model whose latents have collapsed onto the deterministic path (the LSTM)
has KL near zero: its proposal is its prior, so z is not inferred from x
(what z still does to the emission shows only as a gap between the ELBO and
the particle bounds). Every term here is a Monte Carlo
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
        [--samples 8] [--batch-size 16] [--seed 0] [--json out.json]

Prints the command, then a Markdown table.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from benchlib import command_line  # pylint: disable=g-import-not-at-top


def terms(model, dataset, split, batch_size, samples, seed):
  """Per-sequence sums of log p(x|z) and log q - log p over real steps,
  each averaged over `samples` proposal paths: two float64 `[S]` arrays
  in the split's order (S sequences), and their lengths `[S]`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  from seqlvm import shapes  # pylint: disable=g-import-not-at-top
  seed = tfp.random.sanitize_seed(tf.constant([seed, 0], tf.int32),
                                  salt="latent_usage")
  spec = tf.TensorSpec([None, None, dataset.data_size], model.dtype)

  @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
  def sweep(x, lengths):
    # As in the SMC sweep: `prepare` once on the B sequences, each step's
    # inputs tiled to the samples' rows s*B + b (`shapes.tile_particles`).
    mask = shapes.sequence_mask(lengths, tf.shape(x)[0])  # [T, B]
    context = model.prepare(x, mask)
    rows = samples * tf.shape(x)[1]

    def body(t, state, recon, kl):
      context_t = tf.nest.map_structure(
          lambda c: shapes.tile_particles(c[t], samples), context)
      out = model.step(state, context_t,
                       shapes.tile_particles(x[t], samples),
                       tf.random.experimental.stateless_fold_in(seed, t))
      real = shapes.tile_particles(mask[t], samples)  # [S*B]
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
        lambda t, *_: t < tf.shape(x)[0], body,
        (0, model.initial_state(rows), zeros, zeros))
    return (tf.reduce_mean(shapes.split_particles(recon, samples), 0),
            tf.reduce_mean(shapes.split_particles(kl, samples), 0))

  count = dataset.num_sequences(split)
  recon = np.zeros(count)
  kl = np.zeros(count)
  lengths = np.zeros(count, np.int64)
  for x, n, index in dataset.eval_dataset(split, batch_size):
    r, k = sweep(tf.cast(x, model.dtype), tf.cast(n, tf.int32))
    index = index.numpy()
    real = index >= 0  # -1: a filler
    recon[index[real]] = r.numpy()[real]
    kl[index[real]] = k.numpy()[real]
    lengths[index[real]] = n.numpy()[real]
  return recon, kl, lengths


def evaluate(run_dir, split, batch_size, samples, seed, checkpoint):
  from seqlvm.run import evaluation  # pylint: disable=g-import-not-at-top
  from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
  from seqlvm.run import records  # pylint: disable=g-import-not-at-top
  _, dataset, model, path = evaluation.load_run(
      run_dir, factory.make_dataset_and_model, lambda m: print(m, flush=True),
      "measure", checkpoint=checkpoint)
  model = model.for_evaluation()
  start = time.time()
  recon, kl, lengths = terms(model, dataset, split, batch_size, samples,
                             seed)
  row = {"checkpoint": os.path.relpath(path, run_dir)}
  for name, values in (("elbo", recon - kl), ("recon", recon), ("kl", kl)):
    summary = records.summarize(values, lengths)
    row[name] = float(summary["ll_per_t"])
    row[name + "_se"] = float(summary["ll_per_t_se"])
  row["seconds"] = time.time() - start
  print(f"{run_dir}: {row}", file=sys.stderr, flush=True)
  return row


def table(results, split, samples):
  """The results of `evaluate` by run directory, as a Markdown table."""
  lines = [f"{split}: nats per timestep (± se over sequences), {samples} "
           "proposal paths per sequence.", "",
           "| run | checkpoint | ELBO | log p(x\\|z) | KL(q \\|\\| p) |",
           "|---|---|---|---|---|"]
  for run_dir, r in results.items():
    lines.append(f"| {run_dir} | {r['checkpoint']} | {r['elbo']:.3f} ± "
                 f"{r['elbo_se']:.3f} | {r['recon']:.3f} ± "
                 f"{r['recon_se']:.3f} | **{r['kl']:.3f}** ± "
                 f"{r['kl_se']:.3f} |")
  return "\n".join(lines) + "\n"


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--runs", nargs="+", required=True)
  p.add_argument("--split", default="test", choices=("train", "valid",
                                                     "test"))
  p.add_argument("--samples", type=int, default=8,
                 help="proposal paths per sequence [8]")
  p.add_argument("--batch-size", type=int, default=16,
                 help="sequences per batch (each times --samples rows) [16]")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--checkpoint", default="auto",
                 help="auto (best validation), best, latest or ckpt-N [auto]")
  p.add_argument("--json", default=None)
  args = p.parse_args()
  if args.samples < 1 or args.batch_size < 1:
    p.error(f"--samples and --batch-size must be at least 1, got "
            f"{args.samples} and {args.batch_size}")
  print(command_line(), flush=True)
  results = {}
  for run_dir in args.runs:
    results[run_dir] = evaluate(run_dir, args.split, args.batch_size,
                                args.samples, args.seed, args.checkpoint)
  print("\n" + table(results, args.split, args.samples))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
