"""Data-parallel training and evaluation with tf.distribute.

    seqlvm train --distribute mirrored ...            # the local GPUs
    seqlvm train --distribute mirrored --devices 2    # 2 logical CPU devices
    TF_CONFIG='{"cluster": ...}' seqlvm train --distribute multi-worker ...

`make_strategy` gives `tf.distribute.MirroredStrategy` or
`tf.distribute.MultiWorkerMirroredStrategy` (collective all-reduce, one
process per host, configured by the standard TF_CONFIG variable). No
gradient exchange is written here: the replicas' gradients and timestep
counts are summed with the replica context's `all_reduce`.

The global batch. `--batch-size B` is the global batch: every input pipeline
(one per worker) builds the same single-device training stream of global
batches (same seed, same order as `--distribute none`), and replica r of R
takes its share, sequences [r B/R, (r+1) B/R), cut to its own longest
sequence (rounded up to --pad-to-multiple), so no replica runs over another's
padding. The SMC sweep is independent per sequence, so a replica runs the
single-device sweep on its share; the loss is minus the sum of the replicas'
log p_hat over the global batch's real timesteps (all-reduced), so the
bound per timestep is the global batch's, weighted by real timesteps, not a
mean of the replicas' ratios. A share of empty sequences adds exactly zero.

Input: `distribute_datasets_from_function`, not `experimental_distribute_
dataset`. The latter splits each element along its first axis, which is
time in seqlvm's time-major batches, and would keep the global padding in
every share; the function form lets each pipeline cut whole sequences for
each of its replicas (the strategy hands a pipeline's consecutive elements
to its replicas in turn). A distributed iterator cannot be checkpointed, so
a resumed distributed run skips the global stream to its step (the same
position the single-device iterator's saved state holds).

Seeds. The step's seed is [seed, step] as on one device; replica r folds in
r (`replica_seed`) when there is more than one replica. A run is therefore
reproducible for a fixed replica count; with another count (or resumed on
another count) each sequence meets other proposal and resampling noise, an
equally valid estimate with the same expectation, not the same numbers.
One replica gets the single-device seed: --distribute mirrored --devices 1
trains like --distribute none.

Multi-worker: every worker runs the same loop (validation included, which
is deterministic, so early stopping agrees); the chief (task 0 of "worker",
or the "chief" task) writes the run directory; every other worker trains in
a private temporary copy of it (TensorFlow's multi-worker guide: non-chief
workers write to temporary directories, deleted at the end). Stop decisions
(the time budget, early stopping, a Ctrl-C or SIGTERM to any worker: see
`seqlvm.interrupts`) are agreed across workers each step, so no worker is
left waiting in an all-reduce. The run directory must be on a file system
every worker reads (the workers restore the chief's newest checkpoint).

Recommended import: `from seqlvm.run import distribute`.
"""

import contextlib
import json
import os
import shutil
import tempfile

import tensorflow as tf

from seqlvm import shapes
from seqlvm.errors import ConfigError
from seqlvm.run import factory
from seqlvm.smc import diagnostics as diagnostics_lib

__all__ = ["configure_devices", "make_strategy", "num_replicas", "is_chief",
           "task_id", "replica_seed", "replica_share", "train_input",
           "make_train_step", "local_step", "agreement", "worker_run_dir",
           "describe", "eval_input", "eval_seed", "check_batch",
           "check_same_on_workers", "check_same_checkpoint_on_workers",
           "all_gather"]

# What a collective raises when another worker has gone (InternalError
# too, with some communication implementations).
COLLECTIVE_ERRORS = (tf.errors.UnavailableError, tf.errors.CancelledError,
                     tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                     tf.errors.InternalError)

# Files of a run directory a non-chief worker copies into its private one.
_RUN_FILES = ("config.json", "data.json", "versions.json", "best.json")
_RUN_FOLDERS = ("ckpt", "best")


def configure_devices(kind, devices):
  """Creates `devices` logical CPU devices for --distribute mirrored on a
  machine without GPUs; must run before TensorFlow initialises its devices.

  Raises:
    ConfigError: for --devices without mirrored, below 1, more GPUs than
      there are, or after TensorFlow has initialised.
  """
  if devices is None:
    return
  if kind != "mirrored":
    raise ConfigError(f"--devices applies to --distribute mirrored only, got "
                      f"--distribute {kind}.")
  if devices < 1:
    raise ConfigError(f"--devices must be >= 1, got {devices}.")
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    if devices > len(gpus):
      raise ConfigError(f"--devices {devices}: this machine has "
                        f"{len(gpus)} GPU(s).")
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * devices)
  except RuntimeError as e:
    raise ConfigError(
        f"--devices {devices}: TensorFlow's devices are already initialised "
        "in this process; create the logical devices first "
        "(seqlvm.run.distribute.configure_devices).") from e


def _tf_config():
  """TF_CONFIG, parsed and checked."""
  text = os.environ.get("TF_CONFIG", "")
  if not text.strip():
    raise ConfigError(
        "--distribute multi-worker needs the TF_CONFIG environment variable, "
        'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", '
        '"host2:12345"]}, "task": {"type": "worker", "index": 0}}\' on the '
        "first host (index 1 on the second); see the README, \"More than "
        "one device or host\".")
  try:
    value = json.loads(text)
    cluster, task = value["cluster"], value["task"]
    task_type, index = task["type"], int(task["index"])
    members = cluster[task_type]
  except (ValueError, KeyError, TypeError) as e:
    raise ConfigError(
        f"TF_CONFIG: expected a JSON object with \"cluster\" (task type -> "
        f"list of host:port) and \"task\" ({{\"type\", \"index\"}}), got "
        f"{text[:200]!r} ({type(e).__name__}: {e}).") from e
  if task_type not in ("worker", "chief"):
    raise ConfigError(
        f"TF_CONFIG: task type {task_type!r}: --distribute multi-worker "
        "runs \"worker\" tasks (and at most one \"chief\"); parameter "
        "servers and evaluators are not used.")
  if not 0 <= index < len(members):
    raise ConfigError(f"TF_CONFIG: task index {index} is not in the "
                      f"cluster's {len(members)} {task_type!r} tasks.")
  return value


def make_strategy(kind, devices=None):
  """The strategy --distribute names (None for "none").

  Args:
    kind: "none", "mirrored" or "multi-worker".
    devices: mirrored: the first this many GPUs, or this many logical CPU
      devices (`configure_devices` must have made them). Default value:
      None (every GPU, or the one CPU).

  Raises:
    ConfigError: for an unknown kind, or a missing or malformed TF_CONFIG.
  """
  if kind in (None, "none"):
    if devices is not None:
      raise ConfigError("--devices applies to --distribute mirrored only.")
    return None
  if kind == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
      names = [d.name for d in gpus][:devices or len(gpus)]
    else:
      names = [d.name for d in tf.config.list_logical_devices("CPU")]
      if devices is not None and len(names) < devices:
        raise ConfigError(
            f"--devices {devices}: only {len(names)} logical CPU device(s); "
            "call configure_devices before TensorFlow initialises.")
      names = names[:devices or 1]
    return tf.distribute.MirroredStrategy(names)
  if kind == "multi-worker":
    _tf_config()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation
        .RING)
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=options)
  raise ConfigError(f"--distribute must be none, mirrored or multi-worker, "
                    f"got {kind!r}.")


def num_replicas(strategy):
  return 1 if strategy is None else strategy.num_replicas_in_sync


def _cluster(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return None, None
  return resolver.task_type, resolver.task_id


def is_chief(strategy):
  """Whether this process writes the run directory: always without a
  cluster; in one, the "chief" task, or worker 0 when there is none."""
  task_type, index = _cluster(strategy)
  if task_type is None:
    return True
  if task_type == "chief":
    return True
  has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
  return task_type == "worker" and index == 0 and not has_chief


def task_id(strategy):
  """"worker 1", or "" outside a cluster."""
  task_type, index = _cluster(strategy)
  return "" if task_type is None else f"{task_type} {index}"


def describe(strategy):
  """A line for the log."""
  if strategy is None:
    return "one device"
  devices = ", ".join(strategy.extended.worker_devices)
  what = (f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} "
          f"replica(s)")
  task = task_id(strategy)
  if not task:
    return f"{what} on {devices}"
  role = "chief" if is_chief(strategy) else "writes a temporary directory"
  return f"{what}, {task} ({role}) on {devices}"


@contextlib.contextmanager
def worker_run_dir(strategy, run_dir):
  """The directory this process trains in: `run_dir` for the chief; for
  another worker, a private temporary copy of the run's config, records
  and checkpoints (deleted at the end)."""
  if is_chief(strategy):
    yield run_dir
    return
  task_type, index = _cluster(strategy)
  private = tempfile.mkdtemp(prefix=f"seqlvm-{task_type}{index}-")
  try:
    for name in _RUN_FILES:
      if os.path.exists(os.path.join(run_dir, name)):
        shutil.copy2(os.path.join(run_dir, name), private)
    for name in _RUN_FOLDERS:
      if os.path.isdir(os.path.join(run_dir, name)):
        shutil.copytree(os.path.join(run_dir, name),
                        os.path.join(private, name))
    yield private
  finally:
    shutil.rmtree(private, ignore_errors=True)


def replica_seed(seed, replica_id, replicas):
  """The stateless seed of replica `replica_id`: `seed` itself for one
  replica, else `seed` with the replica id folded in."""
  if replicas == 1:
    return seed
  return tf.random.experimental.stateless_fold_in(seed, replica_id)


def replica_share(x, lengths, replica_id, replicas, pad_to_multiple):
  """Replica `replica_id`'s sequences of a global batch, cut to its own
  longest (rounded up to `pad_to_multiple`, at least one step).

  Args:
    x: `[T, B, D]`; lengths: `[B]`; B a multiple of `replicas`.

  Returns:
    x_r `[T_r, B / replicas, D]`, lengths_r `[B / replicas]`.
  """
  share = lengths.shape[0]
  share = (tf.shape(lengths)[0] if share is None else share) // replicas
  lo = replica_id * share
  lengths = lengths[lo:lo + share]
  multiple = max(int(pad_to_multiple), 1)
  steps = tf.maximum(-(-tf.reduce_max(lengths) // multiple) * multiple, 1)
  steps = tf.minimum(steps, tf.shape(x)[0])
  return x[:steps, lo:lo + share], lengths


def check_batch(batch_size, strategy, what="--batch-size"):
  """Refuses a global batch that does not split into whole shares."""
  replicas = num_replicas(strategy)
  if batch_size % replicas:
    raise ConfigError(
        f"{what} {batch_size} is the global batch: it must be a multiple of "
        f"the {replicas} replicas (each takes {what} / {replicas} whole "
        f"sequences); use {what} {max(replicas, batch_size // replicas * replicas)}.")
  return batch_size // replicas


def train_input(strategy, source, config, initial_step):
  """The distributed training input: each replica's share of the global
  batches `source.train_dataset` gives on one device, from `initial_step`.

  Returns:
    dataset: a distributed dataset of (x `[T_r, B/R, D]`, lengths `[B/R]`)
      per replica.
  """
  replicas = strategy.num_replicas_in_sync
  check_batch(config.batch_size, strategy)

  def dataset_fn(context):
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local
    ds = source.train_dataset(config.batch_size, seed=config.seed,
                              pad_to_multiple=config.pad_to_multiple,
                              max_length=config.max_length)
    if initial_step:
      ds = ds.skip(initial_step)

    share = config.batch_size // replicas

    def shares(x, lengths):
      parts = []
      for r in range(local):
        x_r, lengths_r = replica_share(x, lengths, first + r, replicas,
                                       config.pad_to_multiple)
        parts.append((tf.ensure_shape(x_r, [None, share, source.data_size]),
                      tf.ensure_shape(lengths_r, [share])))
      if local == 1:
        return tf.data.Dataset.from_tensors(parts[0])
      return tf.data.Dataset.from_tensors(parts[0]).concatenate(
          _concatenated(parts[1:]))

    return ds.flat_map(shares).prefetch(tf.data.AUTOTUNE)

  options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
  return strategy.distribute_datasets_from_function(dataset_fn, options)


def eval_input(strategy, source, split, batch_size, pad_to_multiple, seed,
               max_batches=None):
  """Whole evaluation batches spread over the replicas: the single-device
  batch i of `source.eval_dataset` (with its seed) on replica i mod R, and
  after the last one, empty fillers (number -1) forever, so that every
  replica (and every worker) runs the same rounds.

  Returns:
    dataset: a distributed dataset of (number `[1]`, x `[T, B, D]`, lengths
      `[B]`, index `[B]`, seed `[2]`) per replica; a filler's index is -1.
  """
  replicas = strategy.num_replicas_in_sync

  def dataset_fn(context):
    local = replicas // context.num_input_pipelines
    first = context.input_pipeline_id * local
    ds = source.eval_dataset(split, batch_size,
                             pad_to_multiple=pad_to_multiple)
    if max_batches is not None:
      ds = ds.take(max_batches)

    def mine(i, unused_batch):  # This pipeline's replicas' batches.
      turn = i % replicas
      return tf.logical_and(turn >= first, turn < first + local)

    def numbered(i, batch):
      x, lengths, index = batch
      i = tf.cast(i, tf.int32)
      return (i[None], x, lengths, index, eval_seed(seed, i))

    ds = ds.enumerate().filter(mine).map(numbered)
    spec = ds.element_spec
    steps = max(int(pad_to_multiple), 1)
    filler = (tf.constant([-1], spec[0].dtype),
              tf.zeros([steps, batch_size, source.data_size], spec[1].dtype),
              tf.zeros([batch_size], spec[2].dtype),
              tf.fill([batch_size], tf.constant(-1, spec[3].dtype)),
              tf.zeros([2], spec[4].dtype))
    return ds.concatenate(tf.data.Dataset.from_tensors(filler).repeat())

  return strategy.distribute_datasets_from_function(dataset_fn)


def eval_seed(seed, i):
  """Evaluation batch i's stateless seed (the same on every device)."""
  return tf.random.experimental.stateless_fold_in(
      tf.constant([seed, 7919], tf.int32), i)


def _concatenated(parts):
  ds = tf.data.Dataset.from_tensors(parts[0])
  for part in parts[1:]:
    ds = ds.concatenate(tf.data.Dataset.from_tensors(part))
  return ds


def local_step(model, config, batch_weight_gradients):
  """One replica's share of the training step, with no collective inside
  (so it may be XLA-compiled): (x, lengths, seed, total_steps, kl_weight)
  -> (minus its log p_hat sum / total_steps, its gradients, its
  per-sequence diagnostics). A share of empty sequences gives exactly zero
  for both. kl_weight is the KL warm-up's weight (a float32 scalar), or
  None without a warm-up."""
  variables, objective = factory.training_objective(
      model, config, batch_weight_gradients)

  def step(x, lengths, seed, total_steps, kl_weight=None):
    mask = shapes.sequence_mask(lengths, tf.shape(x)[0])
    loss, grads, sweep = objective(x, mask, seed, total_steps, kl_weight)
    grads = [tf.zeros_like(v) if g is None else g
             for g, v in zip(grads, variables)]
    per_sequence = diagnostics_lib.per_sequence(sweep, mask,
                                                config.num_particles)
    return loss, grads, per_sequence

  return step


def _global_diagnostics(context, values, lengths):
  """`diagnostics.batch_summary` of the global batch, from each replica's
  per-sequence values (length-weighted sums all-reduced, the minimum ESS
  reduced with MIN)."""
  weights = tf.cast(lengths, tf.float32)
  total = tf.maximum(context.all_reduce("SUM", tf.reduce_sum(weights)), 1.)
  summary = {}
  for name in ("ess_mean_fraction", "resampling_rate"):
    summary[name] = context.all_reduce(
        "SUM", tf.reduce_sum(values[name] * weights)) / total
  least = tf.reduce_min(tf.where(lengths > 0, values["ess_min_fraction"],
                                 tf.ones_like(values["ess_min_fraction"])))
  # ReduceOp has SUM and MEAN only: the minimum of the gathered minima.
  summary["ess_min_fraction"] = tf.reduce_min(
      context.all_gather(least[None], axis=0))
  return summary


def make_train_step(model, optimizer, config, strategy, element_spec,
                    mode="xla", batch_weight_gradients=None):
  """The training step under `strategy` (see `training.make_train_step`).

  Each replica runs `local_step` on its share (XLA-compiled in mode "xla");
  the timestep count, the loss and the gradients are summed over the
  replicas with `all_reduce`, so the gradient norm, its finiteness check
  and clipping see the global gradient; the update is applied once, with
  aggregation skipped (the gradients are already summed).

  Args:
    element_spec: the distributed input's `element_spec` (x, lengths): the
      compiled step's signature (one trace for every batch length); None
      traces per input shape.

  Returns:
    train_step: (per-replica x, per-replica lengths, seed `[2]`) ->
      (bound per timestep, gradient norm, applied, diagnostics) as numbers
      of the global batch.
  """
  from seqlvm.run import training  # pylint: disable=g-import-not-at-top
  if batch_weight_gradients is None:
    batch_weight_gradients = training.BATCH_WEIGHT_GRADIENTS
  if mode not in ("xla", "graph"):
    raise ValueError(f"mode must be xla or graph, got {mode!r}.")
  variables = model.trainable_variables
  local = local_step(model, config, batch_weight_gradients)
  kl_weight_fn = factory.kl_weight_schedule(config)
  if mode == "xla":
    local = tf.function(local, jit_compile=True)
  replicas = strategy.num_replicas_in_sync

  def replica_fn(x, lengths, seed):
    context = tf.distribute.get_replica_context()
    seed = replica_seed(seed, context.replica_id_in_sync_group, replicas)
    total = tf.maximum(context.all_reduce(
        "SUM", tf.reduce_sum(tf.cast(lengths, tf.float32))), 1.)
    kl_weight = (None if kl_weight_fn is None
                 else kl_weight_fn(optimizer.iterations))
    loss, grads, per_sequence = local(x, lengths, seed, total, kl_weight)
    loss = context.all_reduce("SUM", loss)
    grads = context.all_reduce("SUM", grads)
    grad_norm = tf.linalg.global_norm(grads)
    finite = tf.logical_and(tf.math.is_finite(loss),
                            tf.math.is_finite(grad_norm))
    if config.clip_norm > 0:
      grads, _ = tf.clip_by_global_norm(grads, config.clip_norm,
                                        use_norm=grad_norm)
    return (-loss, grad_norm, finite, grads,
            _global_diagnostics(context, per_sequence, lengths))

  def apply_fn(grads):
    optimizer.apply_gradients(zip(grads, variables),
                              skip_gradients_aggregation=True)

  def first(value):  # Every replica holds the same all-reduced value.
    return strategy.experimental_local_results(value)[0]

  def train_step(x, lengths, seed):
    bound, grad_norm, finite, grads, diagnostics = strategy.run(
        replica_fn, args=(x, lengths, seed))

    def apply():
      strategy.run(apply_fn, args=(grads,))
      return tf.constant(True)

    # The update sits outside the replica function: the optimizer's
    # cross-replica update may not be inside a replica's tf.cond.
    applied = tf.cond(first(finite), apply, lambda: tf.constant(False))
    return (first(bound), first(grad_norm), applied,
            {k: first(v) for k, v in diagnostics.items()})

  if element_spec is None:
    return tf.function(train_step, reduce_retracing=True)
  return tf.function(train_step, input_signature=[
      *element_spec, tf.TensorSpec([2], tf.int32)])


def all_gather(nest):
  """In a replica context: every replica's tensors of `nest`, concatenated
  on their first axis in replica order. (MultiWorkerMirrored cannot
  all_gather a replica function's input itself, "destinations can not be
  empty": identities of it are gathered.)"""
  context = tf.distribute.get_replica_context()
  return tf.nest.map_structure(
      lambda t: context.all_gather(tf.identity(t), axis=0), nest)


def check_same_checkpoint_on_workers(strategy, step, digest, what):
  """`check_same_on_workers` of a checkpoint's step and digest
  (`seqlvm.run.records.checkpoint_digest`): every worker read the same
  weights. `what` names the checkpoint for the message."""
  check_same_on_workers(strategy, [step, int(digest[:15] or "0", 16)],
                        f"{what} (its step and digest)")


def check_same_on_workers(strategy, values, what):
  """Raises ConfigError, on every worker, unless the ints `values` are the
  same on all of them (a cluster only; a collective every worker calls).

  Args:
    values: a list of ints (a step, a checkpoint digest's prefix).
    what: what they are, for the message.
  """
  if strategy is None or _cluster(strategy)[0] is None:
    return

  @tf.function
  def gather(value):
    def replica_fn(v):
      return all_gather(v[tf.newaxis])
    return strategy.experimental_local_results(
        strategy.run(replica_fn, args=(value,)))[0]

  got = gather(tf.constant(list(values), tf.int64)).numpy()
  if not (got == got[0]).all():
    seen = sorted({tuple(int(v) for v in row) for row in got})
    raise ConfigError(
        f"The workers disagree on {what} ({task_id(strategy)} has "
        f"{list(values)}; the cluster has {seen}): every worker must read "
        "the same run directory (a file system they share, the same "
        "absolute --run-dir).")


def agreement(strategy):
  """(*flags) -> a tuple, whether any worker set each flag (one all-reduce
  across the workers); None when there is one process (nothing to
  agree)."""
  if strategy is None or _cluster(strategy)[0] is None:
    return None

  @tf.function
  def any_set(flags):
    def replica_fn(value):
      context = tf.distribute.get_replica_context()
      return context.all_reduce("SUM", tf.identity(value))
    return strategy.experimental_local_results(
        strategy.run(replica_fn, args=(flags,)))[0]

  def agree(*flags):
    values = tf.constant([float(bool(f)) for f in flags])
    return tuple(bool(v > 0) for v in any_set(values).numpy())

  return agree
