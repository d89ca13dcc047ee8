"""Benchmark: fusing the products that share an input, in an XLA loop.

At each step the VRNN's prior, proposal and emission first layers all
multiply h_t (`[16, H]` at N = B = 4) by their own `[H, H]` block. Fusing
them is one `[16, H] x [H, 3H]` product (the three blocks concatenated)
and a split. This measures what that gives, forward and backward, in
isolation: a `tf.while_loop` of T = 100 steps whose body is the three
products (separate or fused) and a cheap elementwise combination, under
`jit_compile=True` with a `GradientTape`, as in seqlvm's training step.
Medians of `--reps` calls per round, rounds alternating the two.

    .venv/bin/python experiments/bench_fusion.py [--hidden 256] [--reps 30]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from benchlib import timed  # pylint: disable=g-import-not-at-top
from seqlvm import quiet  # pylint: disable=g-import-not-at-top

tf = quiet.import_tensorflow()

ROWS, T = 16, 100


def make_step(weights, fused):
  """One XLA-compiled forward+backward of the loop; returns its gradients."""

  @tf.function(jit_compile=True)
  def step(h0):
    with tf.GradientTape() as tape:
      w = [tf.convert_to_tensor(v) for v in weights]  # read ahead of the loop

      def body(t, h, total):
        if fused:
          a, b, c = tf.split(tf.matmul(h, tf.concat(w, axis=1)), 3, axis=1)
        else:
          a, b, c = [tf.matmul(h, v) for v in w]
        h = 0.5 * tf.tanh(a) + 0.3 * tf.tanh(b) + 0.2 * tf.tanh(c)
        return t + 1, h, total + tf.reduce_sum(h)

      _, _, total = tf.while_loop(lambda t, *_: t < T, body, (0, h0, 0.),
                                  maximum_iterations=T)
    return tape.gradient(total, weights)

  return step


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--reps", type=int, default=30)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  rng = np.random.RandomState(0)
  weights = [tf.Variable(0.05 * rng.randn(args.hidden, args.hidden)
                         .astype(np.float32)) for _ in range(3)]
  h0 = tf.constant(rng.randn(ROWS, args.hidden).astype(np.float32))
  steps = {name: make_step(weights, name == "fused")
           for name in ("separate", "fused")}
  grads = {name: step(h0) for name, step in steps.items()}  # compile
  for a, b in zip(grads["separate"], grads["fused"]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  times = {name: [] for name in steps}
  for _ in range(args.rounds):
    for name, step in steps.items():
      times[name] += timed(lambda step=step: [g.numpy() for g in step(h0)],
                           args.reps)
  print(f"three [{ROWS}, {args.hidden}] x [{args.hidden}, {args.hidden}] "
        f"products per step, T = {T}, forward + backward under XLA; medians "
        f"of {args.rounds} x {args.reps} calls")
  for name in steps:
    print(f"  {name}: {1e3 * np.median(times[name]):.2f} ms")
  print(f"  separate / fused: "
        f"{np.median(times['separate']) / np.median(times['fused']):.2f}x")


if __name__ == "__main__":
  main()
