"""Bias, variance and cost of the resampling gradient estimators, on the oracle.

The model is a 1-d linear-Gaussian state-space model,

    z_0 ~ N(0, 1),  z_t = a z_{t-1} + N(0, 1),  x_t = z_t + N(0, 0.5^2),

with the bootstrap proposal (FIVO's setting, where resampling matters) and
one sequence x of `--steps` steps drawn from it at a = 0.9. The parameter is
a. Three gradients are compared for each estimator and particle count N:

- the estimator's mean gradient of the FIVO objective log p_hat, over many
  sweeps (`--sweeps`, in `--groups` independent batches, which also give its
  standard error and the variance of one sweep's gradient);
- the gradient of E[log p_hat] (the objective FIVO maximises, with hard
  multinomial resampling), by central finite differences over `--fd-sweeps`
  sweeps with common random numbers (the same seed at a +- eps): forward
  values only, so it is independent of every estimator;
- the true gradient of log p(x), by differentiating TFP's Kalman filter.

The resampling schedule is "always" (every step). With "ess" the schedule
itself depends on a through the weights, a discontinuity that no estimator
here accounts for. Wall time is per training-size gradient step (a batch of
`--batch` sequences), compiled with XLA, the median of `--repeats` runs.

    python experiments/gradient_bias.py [--out runs/gradient_bias]

writes results.json, a Markdown table (table.md) and gradient_bias.png.
`--timing-only` re-measures the wall times of an existing results.json (on
an otherwise idle machine) and rewrites the three files.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from seqlvm import registry  # pylint: disable=g-import-not-at-top
from seqlvm.models import LinearGaussianSSM  # pylint: disable=g-import-not-at-top
from seqlvm.smc import criteria  # pylint: disable=g-import-not-at-top
from seqlvm.smc import filter as filter_lib  # pylint: disable=g-import-not-at-top
from seqlvm.smc import resampling  # pylint: disable=g-import-not-at-top

# (label, estimator, its parameters)
ESTIMATORS = (
    ("stop", "stop", {}),
    ("score", "score", {"baseline": "running_mean"}),
    ("score, no baseline", "score", {"baseline": "none"}),
    ("soft (mixing 0.5)", "soft", {"mixing": 0.5}),
    ("concrete (temp. 0.5)", "concrete", {"temperature": 0.5}),
    ("concrete (temp. 0.1)", "concrete", {"temperature": 0.1}),
)


def sweep_fn(model, num_particles, label):
  """The sweep of the estimator `label` names (a row of ESTIMATORS)."""
  _, estimator, params = [e for e in ESTIMATORS if e[0] == label][0]
  gradient = registry.GRADIENTS.load(estimator)(**params)

  def run(x, seed):
    return filter_lib.smc(
        model, x, num_particles=num_particles,
        resample_criterion_fn=criteria.always,
        resample_fn=resampling.multinomial, resampling_gradient=gradient,
        seed=seed).log_marginal

  return run


def finite_difference(model, a, x, num_particles, sweeps, chunk, eps, a0):
  """d E[log p_hat] / da by central differences with common random numbers."""
  run = tf.function(sweep_fn(model, num_particles, "stop"))
  differences = []
  for i in range(max(sweeps // chunk, 1)):
    tiled = tf.tile(x, [1, chunk, 1])
    seed = tf.constant([1000 + i, 7])
    a.assign([[a0 + eps]])
    up = run(tiled, seed).numpy()
    a.assign([[a0 - eps]])
    down = run(tiled, seed).numpy()
    differences.append((up - down) / (2 * eps))
  a.assign([[a0]])
  d = np.concatenate(differences)
  return float(d.mean()), float(d.std() / np.sqrt(len(d)))


def mean_gradient(model, a, x, num_particles, label, sweeps, groups):
  run = sweep_fn(model, num_particles, label)
  per_group = sweeps // groups
  tiled = tf.tile(x, [1, per_group, 1])

  @tf.function
  def one(seed):
    with tf.GradientTape() as tape:
      value = tf.reduce_mean(run(tiled, seed))
    return tape.gradient(value, a)[0, 0]

  values = np.array([one(tf.constant([g, 11])).numpy()
                     for g in range(groups)])
  return dict(mean=float(values.mean()),
              se=float(values.std(ddof=1) / np.sqrt(groups)),
              # One sweep's gradient variance, from the group means'.
              variance=float(values.var(ddof=1) * per_group))


def step_time(model, a, x, num_particles, label, batch, repeats):
  run = sweep_fn(model, num_particles, label)
  tiled = tf.tile(x, [1, batch, 1])

  @tf.function(jit_compile=True)
  def step(seed):
    with tf.GradientTape() as tape:
      value = tf.reduce_mean(run(tiled, seed))
    return tape.gradient(value, a)

  step(tf.constant([0, 0])).numpy()  # compile
  times = []
  for i in range(repeats):
    start = time.perf_counter()
    step(tf.constant([i, 1])).numpy()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def plot(results, labels, particles, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
  for label in labels:
    rows = [results[str(n)][label] for n in particles]
    axes[0].errorbar(particles, [abs(r["bias_objective"]) for r in rows],
                     yerr=[2 * r["bias_objective_se"] for r in rows],
                     marker="o", capsize=3, label=label)
    axes[1].plot(particles, [abs(r["bias_true"]) for r in rows], marker="o",
                 label=label)
    axes[2].plot(particles, [r["variance"] for r in rows], marker="o",
                 label=label)
  titles = ("|bias| against d E[log p_hat]/da (+- 2 SE)",
            "|bias| against d log p(x)/da", "variance of one sweep's gradient")
  for ax, title in zip(axes, titles):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(particles)
    ax.set_xticklabels([str(n) for n in particles])
    ax.set_xlabel("particles N")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle("Resampling gradient estimators on a linear-Gaussian model "
               "(resampling every step)", fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/gradient_bias")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--particles", type=int, nargs="+", default=[4, 16, 64])
  parser.add_argument("--sweeps", type=int, default=40000,
                      help="sweeps per estimator and N for the mean gradient")
  parser.add_argument("--groups", type=int, default=40)
  parser.add_argument("--fd-sweeps", type=int, default=400000)
  parser.add_argument("--fd-chunk", type=int, default=100000)
  parser.add_argument("--eps", type=float, default=0.02)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--a", type=float, default=0.9)
  parser.add_argument("--timing-only", action="store_true",
                      help="re-measure the times in OUT/results.json")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  labels = [e[0] for e in ESTIMATORS]

  a = tf.Variable([[args.a]], dtype=tf.float64)
  model = LinearGaussianSSM(a, 1., [[1.]], 0.5, 1., proposal="bootstrap",
                            dtype=tf.float64)
  x = model.sample(args.steps, 1, seed=(5, 5))
  with tf.GradientTape() as tape:
    log_p = tf.reduce_sum(model.log_likelihood(x))
  true_grad = float(tape.gradient(log_p, a).numpy().item())
  print(f"log p(x) = {float(log_p):.4f}, d log p(x)/da = {true_grad:.4f}")

  if args.timing_only:
    with open(os.path.join(args.out, "results.json")) as f:
      results = json.load(f)
    for n in args.particles:
      for label in labels:
        seconds = step_time(model, a, x, n, label, args.batch, args.repeats)
        results[str(n)][label]["seconds_per_step"] = seconds
        print(f"N={n} {label}: {1e3 * seconds:.2f} ms/step", flush=True)
    write_outputs(results, labels, args.particles, args.out)
    return
  results = {"config": vars(args), "log_p": float(log_p),
             "true_gradient": true_grad}
  for n in args.particles:
    fd, fd_se = finite_difference(model, a, x, n, args.fd_sweeps,
                                  args.fd_chunk, args.eps, args.a)
    print(f"N={n}: d E[log p_hat]/da = {fd:.4f} +- {fd_se:.4f} (finite "
          "differences)")
    results[str(n)] = {"objective_gradient": fd, "objective_gradient_se": fd_se}
    for label in labels:
      row = mean_gradient(model, a, x, n, label, args.sweeps, args.groups)
      row["bias_objective"] = row["mean"] - fd
      row["bias_objective_se"] = float(np.hypot(row["se"], fd_se))
      row["bias_true"] = row["mean"] - true_grad
      row["seconds_per_step"] = step_time(model, a, x, n, label, args.batch,
                                          args.repeats)
      results[str(n)][label] = row
      print(f"  {label:22s} mean {row['mean']:8.4f} +- {row['se']:.4f}  "
            f"bias {row['bias_objective']:+.4f} (z "
            f"{row['bias_objective'] / row['bias_objective_se']:+.1f})  "
            f"vs true {row['bias_true']:+.4f}  var {row['variance']:.1f}  "
            f"{1e3 * row['seconds_per_step']:.2f} ms/step", flush=True)
  write_outputs(results, labels, args.particles, args.out)


def write_outputs(results, labels, particles, out):
  """table.md, results.json and gradient_bias.png in `out`."""
  config, true_grad = results["config"], results["true_gradient"]
  lines = [
      f"d log p(x)/da = {true_grad:.3f} (Kalman filter); T = "
      f"{config['steps']}, resampling every step; means over "
      f"{config['sweeps']} sweeps, finite differences over "
      f"{config['fd_sweeps']}; ms per XLA gradient step on a batch of "
      f"{config['batch']}.", "",
      "| N | estimator | mean gradient | bias vs d E[log p_hat] (z) | "
      "bias vs d log p(x) | variance (one sweep) | ms / step |",
      "|---|---|---|---|---|---|---|"]
  for n in particles:
    row_n = results[str(n)]
    lines.append(f"| {n} | *finite differences* | "
                 f"{row_n['objective_gradient']:.3f} +- "
                 f"{row_n['objective_gradient_se']:.3f} | | "
                 f"{row_n['objective_gradient'] - true_grad:+.3f} | | |")
    for label in labels:
      r = row_n[label]
      lines.append(
          f"| {n} | {label} | {r['mean']:.3f} +- {r['se']:.3f} | "
          f"{r['bias_objective']:+.3f} ({r['bias_objective'] / r['bias_objective_se']:+.1f}) | "
          f"{r['bias_true']:+.3f} | {r['variance']:.1f} | "
          f"{1e3 * r['seconds_per_step']:.2f} |")
  table = "\n".join(lines)
  print(table)
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  plot(results, labels, particles, os.path.join(out, "gradient_bias.png"))
  print(f"wrote {out}/results.json, table.md, gradient_bias.png")


if __name__ == "__main__":
  main()
