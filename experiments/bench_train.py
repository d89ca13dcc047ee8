"""Benchmark: seqlvm's VRNN + FIVO training step against hand-written baselines.

VRNN trained with FIVO (multinomial resampling when ESS < N/2), N = 4
particles, batch 4, T = 100 steps, 88-dimensional binary data, Adam, at
hidden 64 / latent 32 and hidden 256 / latent 64. Variants of the same model
(same layers, same parameter count, asserted; all start from seqlvm's
initial weights, copied):

- seqlvm-xla:   `seqlvm.run.training.make_train_step(..., mode="xla")`, the
                training default: the sweep as one `tf.while_loop` in one
                XLA-compiled `tf.function`, with seqlvm's finiteness check,
                gradient norm and diagnostics.
- seqlvm-graph: the same with mode="graph" (a `tf.function` without XLA).
- xla-minimal:  a minimal hand-written TensorFlow loop: plain tf ops (no TFP
                distributions, no traces or diagnostics), one `tf.while_loop`
                over time inside one `tf.function(jit_compile=True)`, the
                x-only products computed ahead as `VRNN.prepare` does,
                resampling by `tf.random.stateless_categorical` and gathers,
                tf_keras Adam. What seqlvm's step should at least match.
- torch:        a PyTorch port written the way the public VRNN/FIVO ports
                are: `nn.LSTMCell` and `nn.Sequential` MLPs, a Python loop
                over time, hand-written log densities, `torch.multinomial`
                at ESS < N/2, `torch.optim.Adam`, 2 threads
                (`torch.set_num_threads(2)`), CPU. phi_x is
                applied to the whole sequence once, before the loop (a
                kindness to the baseline). Its LSTM's second bias
                (`bias_hh`) is frozen at zero, so that it has seqlvm's one
                LSTM bias and the same trainable parameter count. Skipped,
                with a printed line, when torch is not installed (an
                optional benchmark extra: `pip install '.[bench]'`).
- torch-1thread: the same port on one thread. On a 2-core machine that
                something else keeps busy, torch's two OpenMP threads wait
                for each other at every op (each tiny op then takes
                milliseconds), and one thread is the faster baseline; the
                targets are checked against the faster torch variant.

Each variant's whole training step (forward, backward, Adam) is timed after
`--warmup` calls (compilation), in `--rounds` interleaved rounds of `--reps`
calls each (round-robin over the variants, so that load on the machine
affects all alike); medians over all calls are reported, with the ratios
torch / seqlvm-xla (targets: >= 6x at hidden 64, >= 3x at hidden 256; the
faster of the torch variants) and
xla-minimal / seqlvm-xla (target >= 1.0). The evaluation sweep (the bound,
forward only) is timed for seqlvm graph and xla in the same rounds. The
first step's loss (nats per timestep, before any update) of every variant is
printed as a check: the variants share weights but not random numbers, so
the values agree in magnitude, not exactly.

FLOPs are the dense layers' multiply-adds x 2 of seqlvm's model, counted
analytically (the particle loop on N*B rows, `prepare` on B rows; a training
step counts 3x the forward FLOPs), the same useful work for every variant.
A 2048 x 2048 float32 matmul, timed before and after, gives the machine's
rate; one LSTM-step-shaped matmul alone gives the ceiling for this model's
16-row products.

    .venv/bin/python experiments/bench_train.py [--reps 5] [--rounds 4] \
        [--sizes 64x32,256x64] [--num-steps 100] [--json out.json] \
        [--variants seqlvm-xla,seqlvm-graph,xla-minimal,torch,torch-1thread]

`--ablations` adds seqlvm-xla-iwae (no resampling), seqlvm-xla-always
(resampling at every step), seqlvm-xla-bf16 (`--precision bfloat16`) and
seqlvm-xla-per-step (`make_train_step(batch_weight_gradients=False)`: the
weight gradients inside the backward loop); any of them also as
seqlvm-graph-NAME through --variants.

Prints the command, then a Markdown table ready for experiments/RESULTS.md.
The default run takes about 6 minutes on the project's 2-core machine when
nothing else runs on it (a third of it XLA compilation), about 9 with
--ablations; while another process keeps a core busy, the 2-thread torch
variant alone can take 15 minutes or more (leave it out with --variants).
"""

import argparse
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from benchlib import command_line  # pylint: disable=g-import-not-at-top
from benchlib import timed  # pylint: disable=g-import-not-at-top
from seqlvm import quiet  # pylint: disable=g-import-not-at-top

tf = quiet.import_tensorflow()  # without the start-up noise
import tf_keras  # pylint: disable=g-import-not-at-top

from seqlvm import config as config_lib  # pylint: disable=g-import-not-at-top
from seqlvm import models  # pylint: disable=g-import-not-at-top
from seqlvm import shapes  # pylint: disable=g-import-not-at-top
from seqlvm.models import nets  # pylint: disable=g-import-not-at-top
from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
from seqlvm.run import training  # pylint: disable=g-import-not-at-top

B, N, D = 4, 4, 88
LEARNING_RATE = 1e-4
# Threads of each torch variant.
TORCH_VARIANTS = {"torch": 2, "torch-1thread": 1}
VARIANTS = ("seqlvm-xla", "seqlvm-graph", "xla-minimal") + tuple(
    TORCH_VARIANTS)
# The profile's ablations of seqlvm's XLA step (--ablations): the config
# changes of "seqlvm-xla-NAME".
ABLATIONS = {
    "": lambda c: c,
    "iwae": lambda c: c.replace(bound="iwae"),  # no resampling at all
    "always": lambda c: c.replace(resampling="always"),  # every step
    # Dense products in bfloat16 (`--precision bfloat16`; this machine's
    # CPUs have AVX512_BF16).
    "bf16": lambda c: c.replace(precision="bfloat16"),
    # The weight gradients of the step's products taken per step, inside
    # the backward loop (`make_train_step(batch_weight_gradients=False)`).
    "per-step": lambda c: c,
}
# torch / seqlvm-xla training-step time, by hidden size.
TORCH_TARGETS = {64: 6., 256: 3.}
MINIMAL_TARGET = 1.
_HALF_LOG_2PI = 0.5 * math.log(2. * math.pi)


def matmul_rate(reps):
  """GFLOP/s and seconds of one 2048 x 2048 x 2048 float32 matmul."""
  a = tf.random.normal([2048, 2048])
  b = tf.random.normal([2048, 2048])
  f = tf.function(lambda: tf.matmul(a, b))
  for _ in range(2):
    f().numpy()
  seconds = float(np.median(timed(lambda: f().numpy(), reps)))
  return 2 * 2048 ** 3 / seconds / 1e9, seconds


def small_matmul_rate(m, k, n, reps, transpose_a=False):
  """GFLOP/s of one XLA-compiled [m, k] x [k, n] matmul (with
  `transpose_a`, a stored as [k, m], as a weight gradient x^T dy reads it)."""
  a = tf.random.normal([k, m] if transpose_a else [m, k])
  b = tf.random.normal([k, n])
  f = tf.function(lambda: tf.matmul(a, b, transpose_a=transpose_a),
                  jit_compile=True)
  for _ in range(5):
    f().numpy()
  return 2 * m * k * n / float(np.median(timed(lambda: f().numpy(),
                                               reps))) / 1e9


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


def count_parameters(variables):
  return sum(int(np.prod(v.shape)) for v in variables)


def mlp_weights(mlp):
  """[(w, b)] of a seqlvm `nets.MLP`, as numpy arrays, first layer first."""
  return [(layer.w.numpy(), layer.b.numpy())
          for layer in list(mlp.layers) + [mlp.out]]


# --------------------------------------------------------------------------
# xla-minimal: the same VRNN + FIVO in plain TensorFlow.


class MinimalVRNN(tf.Module):
  """seqlvm's VRNN (Gaussian latent, Bernoulli emission) in plain tf ops.

  Holds its own variables, copied from a `seqlvm.models.VRNN`. Where one
  seqlvm kernel is read in blocks (the LSTM's [x | z, h] rows, the
  proposal's [h | x] rows) the blocks are separate variables, so the loop
  multiplies whole variables and slices nothing.

  Args:
    reference: the `seqlvm.models.VRNN` to copy.
  """

  def __init__(self, reference, name="minimal_vrnn"):
    super().__init__(name=name)
    h = reference.hidden_size
    self.hidden_size, self.latent_size = h, reference.latent_size
    self.data_mean = tf.constant(reference.data_mean.numpy())
    var = tf.Variable
    with self.name_scope:
      ((self.wx1, self.bx1), (self.wx2, self.bx2)) = [
          (var(w), var(b)) for w, b in mlp_weights(reference.x_encoder)]
      ((self.wz1, self.bz1), (self.wz2, self.bz2)) = [
          (var(w), var(b)) for w, b in mlp_weights(reference.z_encoder)]
      ((self.wp1, self.bp1), (self.wp2, self.bp2)) = [
          (var(w), var(b)) for w, b in mlp_weights(reference.prior.net)]
      ((wq1, bq1), (wq2, bq2)) = mlp_weights(reference.proposal.net)
      # The first layer's rows: h, then phi_x(x_t).
      self.wq1_h, self.wq1_x, self.bq1 = var(wq1[:h]), var(wq1[h:]), var(bq1)
      self.wq2, self.bq2 = var(wq2), var(bq2)
      ((self.we1, self.be1), (self.we2, self.be2)) = [
          (var(w), var(b)) for w, b in mlp_weights(reference.emission.net)]
      kernel = reference.lstm.kernel
      w = kernel.w.numpy()  # rows: phi_x(x_{t-1}), phi_z(z_{t-1}), h
      self.w_lstm_x, self.w_lstm_zh = var(w[:h]), var(w[h:])
      self.b_lstm = var(kernel.b.numpy())

  def log_marginal(self, x, seed, num_particles):
    """FIVO's log p_hat per sequence: `[B]`, for x `[T, B, D]` (static)."""
    num_steps, batch_size, data_size = x.shape
    n, h, z_size = num_particles, self.hidden_size, self.latent_size

    def mlp(inputs, w1, b1, w2, b2):
      return tf.nn.relu(inputs @ w1 + b1) @ w2 + b2

    def gaussian(out):
      loc, raw = tf.split(out, 2, axis=-1)
      return loc, tf.maximum(tf.nn.softplus(raw + 0.5), 1e-3)

    # Work on x alone, for all steps at once (VRNN.prepare): phi_x of the
    # centred x, with phi_x(0) before the first step, and its products with
    # the LSTM's and the proposal's x blocks; then tiled to the particles,
    # row n*B + b of step t reading sequence b.
    centred = tf.reshape(x - self.data_mean, [-1, data_size])
    phi_x = mlp(centred, self.wx1, self.bx1, self.wx2, self.bx2)  # [T*B, H]
    first = mlp(tf.zeros([1, data_size]), self.wx1, self.bx1, self.wx2,
                self.bx2)
    previous = tf.concat([tf.tile(first, [batch_size, 1]),
                          phi_x[:-batch_size]], axis=0)
    lstm_x = tf.tile(tf.reshape(previous @ self.w_lstm_x,
                                [num_steps, batch_size, 4 * h]), [1, n, 1])
    proposal_x = tf.tile(tf.reshape(phi_x @ self.wq1_x,
                                    [num_steps, batch_size, h]), [1, n, 1])
    x_rows = tf.tile(x, [1, n, 1])  # [T, N*B, D]
    log_n = math.log(n)
    offsets = tf.range(batch_size)[tf.newaxis]

    def body(t, hidden, cell, phi_z, log_w, log_p_hat):
      seed_t = tf.random.experimental.stateless_fold_in(seed, t)
      gates = (tf.concat([phi_z, hidden], axis=-1) @ self.w_lstm_zh +
               self.b_lstm + lstm_x[t])
      i, f, g, o = tf.split(gates, 4, axis=-1)
      cell = tf.sigmoid(f) * cell + tf.sigmoid(i) * tf.tanh(g)
      hidden = tf.sigmoid(o) * tf.tanh(cell)
      p_loc, p_scale = gaussian(mlp(hidden, self.wp1, self.bp1, self.wp2,
                                    self.bp2))
      q_loc, q_scale = gaussian(
          tf.nn.relu(hidden @ self.wq1_h + proposal_x[t] + self.bq1) @
          self.wq2 + self.bq2)
      q_loc += p_loc  # the residual proposal
      eps = tf.random.stateless_normal(
          [n * batch_size, z_size],
          tf.random.experimental.stateless_fold_in(seed_t, 0))
      z = q_loc + q_scale * eps
      log_q = tf.reduce_sum(-0.5 * tf.square(eps) - tf.math.log(q_scale),
                            axis=-1)
      log_p = tf.reduce_sum(-0.5 * tf.square((z - p_loc) / p_scale) -
                            tf.math.log(p_scale), axis=-1)
      phi_z = mlp(z, self.wz1, self.bz1, self.wz2, self.bz2)
      logits = mlp(tf.concat([hidden, phi_z], axis=-1), self.we1, self.be1,
                   self.we2, self.be2)
      log_px = tf.reduce_sum(x_rows[t] * logits - tf.nn.softplus(logits),
                             axis=-1)
      log_w += tf.reshape(log_p + log_px - log_q, [n, batch_size])
      # Resample where ESS < N/2: log ESS = -logsumexp(2 log softmax(w)).
      log_sum = tf.reduce_logsumexp(log_w, axis=0)
      log_ess = -tf.reduce_logsumexp(
          2. * tf.stop_gradient(log_w - log_sum), axis=0)
      fire = log_ess < math.log(0.5 * n)
      log_p_hat += tf.where(fire, log_sum - log_n, 0.)
      ancestors = tf.transpose(tf.random.stateless_categorical(
          tf.transpose(tf.stop_gradient(log_w)), n,
          tf.random.experimental.stateless_fold_in(seed_t, 1),
          dtype=tf.int32))  # [N, B]
      ancestors = tf.where(fire[tf.newaxis], ancestors,
                           tf.range(n)[:, tf.newaxis])
      rows = tf.reshape(ancestors * batch_size + offsets, [-1])
      hidden, cell, phi_z = (tf.gather(s, rows) for s in (hidden, cell,
                                                           phi_z))
      log_w = tf.where(fire[tf.newaxis], 0., log_w)
      return t + 1, hidden, cell, phi_z, log_w, log_p_hat

    zeros = tf.zeros([n * batch_size, h])
    loop_vars = (tf.constant(0), zeros, zeros, zeros,
                 tf.zeros([n, batch_size]), tf.zeros([batch_size]))
    *_, log_w, log_p_hat = tf.while_loop(
        lambda t, *_: t < num_steps, body, loop_vars,
        maximum_iterations=num_steps)
    # The Gaussians' -log(2 pi)/2 per dimension cancel in log p - log q.
    return log_p_hat + tf.reduce_logsumexp(log_w, axis=0) - log_n


def minimal_train_step(model, optimizer, num_particles):
  """x `[T, B, D]`, seed `[2]` -> loss per timestep; one XLA function."""
  variables = model.trainable_variables

  @tf.function(jit_compile=True)
  def step(x, seed):
    with tf.GradientTape() as tape:
      num_steps, batch_size = x.shape[0], x.shape[1]
      loss = -tf.reduce_sum(model.log_marginal(x, seed, num_particles)) / (
          num_steps * batch_size)
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))
    return loss

  return step


# --------------------------------------------------------------------------
# torch: the port as the public VRNN / FIVO ports write it.


def import_torch():
  """torch, or None (with a printed line) when it is not installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    print("torch: not installed, variant skipped (an optional benchmark "
          "extra: pip install '.[bench]')")
    return None
  return torch


def torch_vrnn(torch, reference, num_particles):
  """A PyTorch VRNN + FIVO module with `reference`'s weights.

  Args:
    torch: the torch module.
    reference: the `seqlvm.models.VRNN` to copy.
    num_particles: N.

  Returns:
    model: an `nn.Module` whose forward(x `[T, B, D]`) is log p_hat `[B]`.
  """
  nn, functional = torch.nn, torch.nn.functional
  h, z, d = reference.hidden_size, reference.latent_size, reference.data_size

  def sequential(sizes, weights):
    layers = []
    for i, ((a, b), (w, bias)) in enumerate(zip(zip(sizes[:-1], sizes[1:]),
                                                weights)):
      linear = nn.Linear(a, b)
      with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w.T.copy()))
        linear.bias.copy_(torch.from_numpy(bias))
      layers += [linear] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)

  def normal_log_prob(value, loc, scale):
    return (-0.5 * ((value - loc) / scale) ** 2 - torch.log(scale) -
            _HALF_LOG_2PI).sum(-1)

  def gaussian(out):
    loc, raw = out.chunk(2, dim=-1)
    return loc, functional.softplus(raw + 0.5).clamp_min(1e-3)

  class VRNN(nn.Module):
    """phi_x, phi_z, LSTM, prior, proposal and emission, FIVO forward."""

    def __init__(self):
      super().__init__()
      self.phi_x = sequential([d, h, h], mlp_weights(reference.x_encoder))
      self.phi_z = sequential([z, h, h], mlp_weights(reference.z_encoder))
      self.prior = sequential([h, h, 2 * z], mlp_weights(reference.prior.net))
      self.enc = sequential([2 * h, h, 2 * z],
                            mlp_weights(reference.proposal.net))
      self.dec = sequential([2 * h, h, d],
                            mlp_weights(reference.emission.net))
      self.rnn = nn.LSTMCell(2 * h, h)
      w = reference.lstm.kernel.w.numpy()  # rows: phi_x, phi_z, h
      with torch.no_grad():
        # Gate order i, f, g, o in both.
        self.rnn.weight_ih.copy_(torch.from_numpy(w[:2 * h].T.copy()))
        self.rnn.weight_hh.copy_(torch.from_numpy(w[2 * h:].T.copy()))
        self.rnn.bias_ih.copy_(torch.from_numpy(
            reference.lstm.kernel.b.numpy()))
        self.rnn.bias_hh.zero_()
      self.rnn.bias_hh.requires_grad_(False)  # one LSTM bias, as seqlvm's
      self.register_buffer("mean", torch.from_numpy(
          reference.data_mean.numpy()))

    def forward(self, x):
      num_steps, batch_size, _ = x.shape
      n = num_particles
      # phi_x of the centred inputs, phi_x(0) before the first step.
      phi_x = self.phi_x(torch.cat([torch.zeros_like(x[:1]),
                                    x - self.mean]))  # [T+1, B, H]
      hidden = torch.zeros(n * batch_size, h)
      cell = torch.zeros(n * batch_size, h)
      phi_z = torch.zeros(n * batch_size, h)
      log_w = torch.zeros(n, batch_size)
      log_p_hat = torch.zeros(batch_size)
      offsets = torch.arange(batch_size)
      for t in range(num_steps):
        # Particle-major rows: row n*B + b reads sequence b.
        hidden, cell = self.rnn(
            torch.cat([phi_x[t].repeat(n, 1), phi_z], -1), (hidden, cell))
        p_loc, p_scale = gaussian(self.prior(hidden))
        q_loc, q_scale = gaussian(self.enc(
            torch.cat([hidden, phi_x[t + 1].repeat(n, 1)], -1)))
        q_loc = q_loc + p_loc
        z = q_loc + q_scale * torch.randn_like(q_loc)
        phi_z = self.phi_z(z)
        logits = self.dec(torch.cat([hidden, phi_z], -1))
        log_px = -functional.binary_cross_entropy_with_logits(
            logits, x[t].repeat(n, 1), reduction="none").sum(-1)
        log_alpha = (normal_log_prob(z, p_loc, p_scale) + log_px -
                     normal_log_prob(z, q_loc, q_scale))
        log_w = log_w + log_alpha.view(n, batch_size)
        log_probs = torch.log_softmax(log_w.detach(), dim=0)
        ess = 1. / torch.exp(2. * log_probs).sum(0)
        fire = ess < 0.5 * n
        if fire.any():
          log_p_hat = log_p_hat + torch.where(
              fire, torch.logsumexp(log_w, 0) - math.log(n),
              torch.zeros_like(log_p_hat))
          ancestors = torch.multinomial(log_probs.exp().t(), n,
                                        replacement=True).t()  # [N, B]
          ancestors = torch.where(fire[None], ancestors,
                                  torch.arange(n)[:, None])
          rows = (ancestors * batch_size + offsets).reshape(-1)
          hidden, cell, phi_z = hidden[rows], cell[rows], phi_z[rows]
          log_w = torch.where(fire[None], torch.zeros_like(log_w), log_w)
      return log_p_hat + torch.logsumexp(log_w, 0) - math.log(n)

  return VRNN()


def torch_train_step(torch, model, x, threads):
  """() -> loss per timestep: one step of forward, backward and Adam, on
  `threads` threads."""
  optimizer = torch.optim.Adam(
      [p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)
  x = torch.from_numpy(x)
  num_steps, batch_size = x.shape[0], x.shape[1]

  def step():
    torch.set_num_threads(threads)
    optimizer.zero_grad()
    loss = -model(x).sum() / (num_steps * batch_size)
    loss.backward()
    optimizer.step()
    return loss.item()

  return step


# --------------------------------------------------------------------------


def bench_size(hidden, latent, num_steps, variants, reps, rounds, warmup,
               torch):
  """Times every variant at one size; returns (rows, timed items)."""
  config = config_lib.Config(hidden_size=hidden, latent_size=latent,
                             num_particles=N, batch_size=B, bound="fivo")
  rng = np.random.RandomState(0)
  mean = np.full(D, 0.05)
  x_np = (rng.rand(num_steps, B, D) < 0.05).astype(np.float32)
  x = tf.constant(x_np)
  lengths = tf.constant([num_steps] * B, tf.int32)
  seed = tf.constant([1, 2], tf.int32)

  def new_model():
    return models.VRNN(D, hidden, latent, data_mean=mean)

  reference = new_model()
  num_parameters = count_parameters(reference.trainable_variables)
  forward_flops = vrnn_flops(reference, num_steps, B, N)
  bound_fn = factory.bound_spec(config, "fivo", N, training=False)
  items = {}  # (variant, "train" or "eval") -> () -> loss

  for variant in variants:
    if variant.startswith("seqlvm-"):
      mode, _, ablation = variant[len("seqlvm-"):].partition("-")
      with nets.matmul_precision(ABLATIONS[ablation](config).precision):
        model = new_model()
      optimizer = tf_keras.optimizers.Adam(LEARNING_RATE)
      optimizer.build(model.trainable_variables)
      step = training.make_train_step(
          model, optimizer, ABLATIONS[ablation](config), D, mode=mode,
          batch_weight_gradients=(ablation != "per-step"))
      # The step returns the bound per timestep; the loss is its negative.
      items[variant, "train"] = (
          lambda step=step: -float(step(x, lengths, seed)[0].numpy()))

      def evaluate(x, lengths, seed, model=model):
        return bound_fn(model, x, shapes.sequence_mask(lengths, num_steps),
                        seed)

      evaluate = tf.function(evaluate, jit_compile=(mode == "xla"))
      items[variant, "eval"] = (
          lambda evaluate=evaluate: -float(tf.reduce_sum(
              evaluate(x, lengths, seed)).numpy()) / (num_steps * B))
    elif variant == "xla-minimal":
      model = MinimalVRNN(reference)
      count = count_parameters(model.trainable_variables)
      assert count == num_parameters, (count, num_parameters)
      optimizer = tf_keras.optimizers.Adam(LEARNING_RATE)
      optimizer.build(model.trainable_variables)
      step = minimal_train_step(model, optimizer, N)
      items[variant, "train"] = lambda step=step: float(step(x, seed).numpy())
    elif variant in TORCH_VARIANTS and torch is not None:
      torch.manual_seed(0)
      model = torch_vrnn(torch, reference, N)
      count = sum(p.numel() for p in model.parameters() if p.requires_grad)
      assert count == num_parameters, (count, num_parameters)
      items[variant, "train"] = torch_train_step(torch, model, x_np,
                                                 TORCH_VARIANTS[variant])

  initial = {}
  for key, fn in items.items():
    start = time.perf_counter()
    initial[key] = fn()
    for _ in range(warmup - 1):
      fn()
    print(f"  warm-up {key[0]} {key[1]}: {time.perf_counter() - start:.1f} s"
          f" (initial loss {initial[key]:.3f} nats per timestep)",
          flush=True)
  times = {key: [] for key in items}
  for _ in range(rounds):
    for key, fn in items.items():
      times[key] += timed(fn, reps)

  rows = []
  for variant in variants:
    if (variant, "train") not in items:
      continue
    train_s = float(np.median(times[variant, "train"]))
    row = dict(hidden=hidden, latent=latent, variant=variant,
               num_steps=num_steps, parameters=num_parameters,
               train_ms=1e3 * train_s,
               train_gflops=3 * forward_flops / train_s / 1e9,
               train_times_ms=[1e3 * s for s in times[variant, "train"]],
               initial_loss=initial[variant, "train"])
    if (variant, "eval") in items:
      eval_s = float(np.median(times[variant, "eval"]))
      row.update(eval_ms=1e3 * eval_s,
                 eval_gflops=forward_flops / eval_s / 1e9,
                 eval_times_ms=[1e3 * s for s in times[variant, "eval"]],
                 eval_initial_loss=initial[variant, "eval"])
    rows.append(row)
  return rows


def parse_sizes(text):
  """ "64x32,256x64" -> [(64, 32), (256, 64)]."""
  sizes = []
  for part in text.split(","):
    hidden, latent = part.lower().split("x")
    sizes.append((int(hidden), int(latent)))
  return sizes


def ratio_lines(rows):
  """The target ratios, one line each, and a dict of them.

  torch / seqlvm-xla is given for each torch variant; its target is checked
  against the faster one (the stronger baseline).
  """
  lines, ratios = [], {}
  by_key = {(r["hidden"], r["variant"]): r for r in rows}

  def line(hidden, name, ratio, target):
    ratios[f"{name}/seqlvm-xla@{hidden}"] = ratio
    verdict = ("" if target is None else
               f" (target >= {target:g}x: "
               f"{'met' if ratio >= target else 'NOT met'})")
    lines.append(f"- hidden {hidden}: {name} / seqlvm-xla training step = "
                 f"**{ratio:.2f}x**{verdict}")

  for hidden in sorted({r["hidden"] for r in rows}):
    base = by_key.get((hidden, "seqlvm-xla"))
    if base is None:
      continue
    torch_ratios = {}
    for variant in TORCH_VARIANTS:
      if (hidden, variant) in by_key:
        torch_ratios[variant] = by_key[hidden, variant]["train_ms"] / base[
            "train_ms"]
        line(hidden, variant, torch_ratios[variant], None)
    if torch_ratios:
      fastest = min(torch_ratios, key=torch_ratios.get)
      line(hidden, f"fastest torch ({fastest})", torch_ratios[fastest],
           TORCH_TARGETS.get(hidden))
    if (hidden, "xla-minimal") in by_key:
      line(hidden, "xla-minimal", by_key[hidden, "xla-minimal"]["train_ms"] /
           base["train_ms"], MINIMAL_TARGET)
  return lines, ratios


def main():
  global B, N  # pylint: disable=global-statement
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=5,
                      help="timed calls per variant per round")
  parser.add_argument("--rounds", type=int, default=4,
                      help="interleaved rounds over the variants")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed calls first (compilation)")
  parser.add_argument("--sizes", default="64x32,256x64",
                      help="HIDDENxLATENT, comma-separated")
  parser.add_argument("--num-steps", type=int, default=100, help="T")
  parser.add_argument("--batch-size", type=int, default=B,
                      help="B (the targets are for the default, 4)")
  parser.add_argument("--num-particles", type=int, default=N,
                      help="N (the targets are for the default, 4)")
  parser.add_argument("--variants", default=",".join(VARIANTS),
                      help=f"comma-separated, of {', '.join(VARIANTS)}")
  parser.add_argument("--ablations", action="store_true",
                      help="also seqlvm-xla-iwae (no resampling), "
                      "seqlvm-xla-always (resampling every step), "
                      "seqlvm-xla-bf16 (bfloat16 products) and "
                      "seqlvm-xla-per-step (weight gradients inside the "
                      "backward loop): the profile's "
                      "ablations (any of them also with -graph- for -xla-"
                      ", by --variants)")
  parser.add_argument("--json", default=None, help="also write rows here")
  args = parser.parse_args()
  variants = [v.strip() for v in args.variants.split(",") if v.strip()]
  if args.ablations:
    variants += [f"seqlvm-xla-{a}" for a in ABLATIONS if a]
  known = VARIANTS + tuple(f"seqlvm-{m}-{a}" for a in ABLATIONS if a
                           for m in ("xla", "graph"))
  unknown = sorted(set(variants) - set(known))
  if unknown:
    parser.error(f"unknown variants {unknown}; choose from {known}")
  if min(args.reps, args.rounds, args.warmup, args.num_steps,
         args.batch_size, args.num_particles) < 1:
    parser.error("--reps, --rounds, --warmup, --num-steps, --batch-size and "
                 "--num-particles must be >= 1")
  B, N = args.batch_size, args.num_particles
  sizes = parse_sizes(args.sizes)

  print("$ " + command_line(), flush=True)
  torch = (import_torch() if set(variants) & set(TORCH_VARIANTS) else
           None)
  mm_gflops, mm_s = matmul_rate(max(args.reps, 3))
  rows = []
  for hidden, latent in sizes:
    print(f"hidden {hidden} / latent {latent}:", flush=True)
    rows += bench_size(hidden, latent, args.num_steps, variants, args.reps,
                       args.rounds, args.warmup, torch)
  mm_after, _ = matmul_rate(max(args.reps, 3))

  print()
  print(f"VRNN + FIVO (ESS < N/2, multinomial), N={N}, B={B}, "
        f"T={args.num_steps}, D={D}, Adam; tf {tf.__version__}"
        + (f", torch {torch.__version__}" if torch is not None else "")
        + f", {os.cpu_count()} CPUs. Medians of {args.rounds} interleaved "
        f"rounds x {args.reps} calls, after {args.warmup} warm-up calls.")
  print(f"matmul 2048x2048 float32: {mm_gflops:.1f} GFLOP/s before, "
        f"{mm_after:.1f} after the runs ({1e3 * mm_s:.1f} ms)")
  print()
  print("| hidden/latent | params | variant | train step ms | train GFLOP/s "
        "| train % of matmul | train time / seqlvm-xla | eval ms | "
        "eval GFLOP/s | initial loss |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  base = {r["hidden"]: r for r in rows if r["variant"] == "seqlvm-xla"}
  for r in rows:
    r["train_frac_matmul"] = r["train_gflops"] / mm_gflops
    relative = (f"{r['train_ms'] / base[r['hidden']]['train_ms']:.2f}x"
                if r["hidden"] in base else "-")
    evaluation = (f"{r['eval_ms']:.1f} | {r['eval_gflops']:.1f}"
                  if "eval_ms" in r else "- | -")
    print(f"| {r['hidden']}/{r['latent']} | {r['parameters']:,} | "
          f"{r['variant']} | {r['train_ms']:.1f} | {r['train_gflops']:.1f} | "
          f"{100 * r['train_frac_matmul']:.0f}% | {relative} | {evaluation} "
          f"| {r['initial_loss']:.3f} |")
  print()
  lines, ratios = ratio_lines(rows)
  for line in lines:
    print(line)
  ceilings = []
  for hidden, _ in sizes:
    gflops = small_matmul_rate(N * B, 2 * hidden, 4 * hidden,
                               args.reps * 20)
    # The backward pass's weight gradient of that product, per step (an
    # outer product of rank N*B) and batched over the T steps after the
    # loop (what a custom gradient of the sweep would run instead).
    grad_step = small_matmul_rate(2 * hidden, N * B, 4 * hidden,
                                  args.reps * 20, transpose_a=True)
    grad_batched = small_matmul_rate(2 * hidden, N * B * args.num_steps,
                                     4 * hidden, args.reps * 4,
                                     transpose_a=True)
    ceilings.append(dict(hidden=hidden, gflops=gflops,
                         weight_grad_step_gflops=grad_step,
                         weight_grad_batched_gflops=grad_batched))
    print(f"ceiling: one [{N * B}, {2 * hidden}] x [{2 * hidden}, "
          f"{4 * hidden}] matmul (the LSTM step) runs at {gflops:.1f} GFLOP/s "
          f"= {100 * gflops / mm_gflops:.0f}% of the large matmul; its "
          f"weight gradient [{2 * hidden}, {N * B}] x [{N * B}, "
          f"{4 * hidden}] per step at {grad_step:.1f} GFLOP/s, batched over "
          f"the {args.num_steps} steps ([{2 * hidden}, "
          f"{N * B * args.num_steps}] x [{N * B * args.num_steps}, "
          f"{4 * hidden}]) at {grad_batched:.1f} GFLOP/s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(dict(command=command_line(), matmul_gflops=mm_gflops,
                     matmul_gflops_after=mm_after, ratios=ratios,
                     ceilings=ceilings, rows=rows), f, indent=2)


if __name__ == "__main__":
  main()
