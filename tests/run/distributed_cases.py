"""Cases of tests/run/test_distribute.py that need a fresh process.

Logical CPU devices must be configured before TensorFlow initialises, so
each case runs here, in its own process, and prints one JSON line:

    python -m tests.run.distributed_cases mirrored PICKLE
"""

import json
import sys

import numpy as np
import tensorflow as tf

from seqlvm.config import Config
from seqlvm.models import LinearGaussianSSM
from seqlvm.run import distribute
from seqlvm.run import factory
from seqlvm.run import training
from tests.conftest import random_lgssm_params

LENGTHS = [8, 5, 7, 3]
PADDED_LENGTHS = [8, 5, 0, 0]  # Replica 1's share is all padding.


def _lgssm():
  """The LGSSM with the smoothing proposal (IWAE exact and noise-free), its
  transition matrix a variable."""
  params = random_lgssm_params(seed=3, latent_size=3, data_size=2)
  a = tf.Variable(params.pop("transition_matrix").astype(np.float32),
                  name="a")
  return LinearGaussianSSM(transition_matrix=a, proposal="smoothing",
                           dtype=tf.float32, **params)


def _data():
  x = _lgssm().sample(8, 4, seed=(1, 2))
  return tf.cast(x, tf.float32)


def _single(config, x, lengths, mode):
  model = _lgssm()
  optimizer, _ = factory.make_optimizer(config, model.trainable_variables)
  step = training.make_train_step(model, optimizer, config, 2, mode=mode)
  bound, norm, applied, _ = step(x, tf.constant(lengths, tf.int32),
                                 tf.constant([0, 0], tf.int32))
  return {"bound": float(bound), "grad_norm": float(norm),
          "applied": bool(applied),
          "weights": model.trainable_variables[0].numpy().tolist()}


def _mirrored(strategy, config, x, lengths, mode):
  with strategy.scope():
    model = _lgssm()
    optimizer, _ = factory.make_optimizer(config, model.trainable_variables)
  step = distribute.make_train_step(model, optimizer, config, strategy, None,
                                    mode=mode)
  lengths = tf.constant(lengths, tf.int32)
  replicas = strategy.num_replicas_in_sync
  shares = [distribute.replica_share(x, lengths, r, replicas, 1)
            for r in range(replicas)]
  xs = strategy.experimental_distribute_values_from_function(
      lambda context: shares[context.replica_id_in_sync_group][0])
  ls = strategy.experimental_distribute_values_from_function(
      lambda context: shares[context.replica_id_in_sync_group][1])
  bound, norm, applied, diagnostics = step(xs, ls,
                                           tf.constant([0, 0], tf.int32))
  variable = model.trainable_variables[0]
  copies = [v.numpy().tolist() for v in
            strategy.experimental_local_results(variable)]
  return {"bound": float(bound), "grad_norm": float(norm),
          "applied": bool(applied), "weights": copies[0],
          "copies_equal": all(c == copies[0] for c in copies),
          "share_steps": [int(s[0].shape[0]) for s in shares],
          "diagnostics": {k: float(v) for k, v in diagnostics.items()}}


def _annealed_by_hand(config, x, lengths, replicas):
  """The objective of the first update under a KL warm-up, from each
  replica's share and seed: with beta < 1 the smoothing proposal's weights
  are random, so the replicas' own seeds are replayed."""
  model = _lgssm()
  spec = factory.bound_spec(config, config.bound, config.num_particles)
  beta = factory.kl_weight_schedule(config)(0)
  lengths = tf.constant(lengths, tf.int32)
  total = 0.
  for r in range(replicas):
    share_x, share_lengths = distribute.replica_share(x, lengths, r,
                                                      replicas, 1)
    seed = distribute.replica_seed(tf.constant([0, 0], tf.int32), r,
                                   replicas)
    mask = tf.transpose(tf.sequence_mask(share_lengths, share_x.shape[0]))
    total += float(tf.reduce_sum(spec.sweep(
        model, share_x, mask, seed, kl_weight=beta).log_marginal))
  plain = float(tf.reduce_sum(spec.sweep(
      model, x, tf.transpose(tf.sequence_mask(lengths, x.shape[0])),
      tf.constant([0, 0], tf.int32)).log_marginal))
  steps = float(sum(int(l) for l in lengths))
  return {"bound": total / steps, "beta": float(beta), "plain": plain / steps}


def _padding_share(config, x):
  """One replica's local step on a share of empty sequences."""
  model = _lgssm()
  local = distribute.local_step(model, config, True)
  share_x, share_lengths = distribute.replica_share(
      x, tf.constant(PADDED_LENGTHS, tf.int32), 1, 2, 1)
  loss, grads, _ = local(share_x, share_lengths, tf.constant([0, 0]),
                         tf.constant(13.))
  return {"loss": float(loss),
          "grad_abs_max": max(float(tf.reduce_max(tf.abs(g))) for g in grads),
          "steps": int(share_x.shape[0])}


def _input(strategy, pickle_path):
  """The distributed training input against the single-device stream."""
  from seqlvm.data import sources  # pylint: disable=g-import-not-at-top
  config = Config(data=pickle_path, batch_size=4, pad_to_multiple=4)
  source = sources.open_source(pickle_path)
  single = iter(source.train_dataset(4, seed=0, pad_to_multiple=4))
  for _ in range(3):  # The distributed stream starts at step 3.
    next(single)
  inputs = iter(distribute.train_input(strategy, source, config, 3))
  same, cut = True, True
  for _ in range(4):
    x, lengths = next(single)
    xs, ls = next(inputs)
    xs = strategy.experimental_local_results(xs)
    ls = strategy.experimental_local_results(ls)
    joined = np.concatenate([v.numpy() for v in ls])
    same &= bool(np.array_equal(joined, lengths.numpy()))
    for r, (xr, lr) in enumerate(zip(xs, ls)):
      steps = -(-int(np.max(lr.numpy())) // 4) * 4
      cut &= xr.shape[0] == steps
      same &= bool(np.array_equal(
          xr.numpy(), x.numpy()[:steps, 2 * r:2 * r + 2]))
  return {"same_sequences": same, "cut_to_own_length": cut}


def mirrored(pickle_path):
  distribute.configure_devices("mirrored", 2)
  strategy = distribute.make_strategy("mirrored", 2)
  config = Config(bound="iwae", num_particles=4, batch_size=4,
                  learning_rate=0.01)
  x = _data()
  out = {"replicas": strategy.num_replicas_in_sync}
  for mode in ("graph", "xla"):
    out[mode] = {"single": _single(config, x, LENGTHS, mode),
                 "mirrored": _mirrored(strategy, config, x, LENGTHS, mode)}
  out["padding"] = {
      "single": _single(config, x, PADDED_LENGTHS, "graph"),
      "first_share_only": _single(config.replace(batch_size=2), x[:, :2],
                                  PADDED_LENGTHS[:2], "graph"),
      "mirrored": _mirrored(strategy, config, x, PADDED_LENGTHS, "graph"),
      "local": _padding_share(config, x)}
  annealed = config.replace(kl_warmup_steps=4, kl_weight_start=0.5)
  out["kl_warmup"] = {
      "by_hand": _annealed_by_hand(annealed, x, LENGTHS, 2),
      "mirrored": _mirrored(strategy, annealed, x, LENGTHS, "graph")}
  out["input"] = _input(strategy, pickle_path)
  return out


def _weights(model):
  return [v.numpy().tolist() for v in model.trainable_variables]


def lgssm_steps(kind, steps="3"):
  """`steps` updates of the LGSSM on the global batch: on one device
  ("none"), or as this TF_CONFIG worker ("multi-worker")."""
  strategy = distribute.make_strategy(kind)
  config = Config(bound="iwae", num_particles=4, batch_size=4,
                  learning_rate=0.01)
  x, lengths = _data(), tf.constant(LENGTHS, tf.int32)
  scope = strategy.scope() if strategy else tf.name_scope("single")
  with scope:
    model = _lgssm()
    optimizer, _ = factory.make_optimizer(config, model.trainable_variables)
  if strategy is None:
    step = training.make_train_step(model, optimizer, config, 2,
                                    mode="graph")
    inputs = lambda: (x, lengths)
  else:
    step = distribute.make_train_step(model, optimizer, config, strategy,
                                      None, mode="graph")
    replicas = strategy.num_replicas_in_sync

    def inputs():
      def value(i):
        def fn(context):
          return distribute.replica_share(
              x, lengths, context.replica_id_in_sync_group, replicas, 1)[i]
        return strategy.experimental_distribute_values_from_function(fn)
      return value(0), value(1)
  bounds, initial = [], _weights(model)
  for k in range(int(steps)):
    bound, _, applied, _ = step(*inputs(), tf.constant([0, k], tf.int32))
    bounds.append(float(bound))
    assert bool(applied)
  return {"bounds": bounds, "weights": _weights(model), "initial": initial,
          "chief": distribute.is_chief(strategy)}


def vrnn_train(kind, run_dir, pickle_path, devices=None):
  """`training.train` of a tiny VRNN, 3 steps (graphs: XLA under the
  strategies is tested by `mirrored`); its final weights."""
  devices = int(devices) if devices else None
  distribute.configure_devices(kind, devices)
  strategy = distribute.make_strategy(kind, devices)
  models = []

  def make(config):
    source, model = factory.make_dataset_and_model(config)
    models.append(model)
    return source, model

  config = Config(data=pickle_path, hidden_size=8, latent_size=4,
                  batch_size=4, num_steps=3, valid_every=0,
                  checkpoint_every=3, valid_samples=0, seed=5,
                  jit_compile=False)
  where = []
  original = training._train_in  # pylint: disable=protected-access

  def train_in(config, run_dir, *args, **kwargs):
    where.append(str(run_dir))
    return original(config, run_dir, *args, **kwargs)

  training._train_in = train_in  # pylint: disable=protected-access
  result = training.train(config, run_dir, make_dataset_and_model=make,
                          progress=False, strategy=strategy)
  return {"step": result.step, "weights": _weights(models[0]),
          "chief": distribute.is_chief(strategy),
          "private_run_dir": where[0] if where else None}


if __name__ == "__main__":
  case = {"mirrored": mirrored, "lgssm-steps": lgssm_steps,
          "vrnn-train": vrnn_train}[sys.argv[1]]
  print("RESULT " + json.dumps(case(*sys.argv[2:])))
