"""Golden numbers: what a refactor must leave bit-identical.

For fixed seeds it records, as exact float hex strings:
- every model's ELBO, IWAE and FIVO (N = 3), FIVO with every resampling
  scheme and every resampling gradient, and the global norm of each one's
  gradient;
- a sample of each model (a SHA-256 of its bytes and its sum);
- the checkpoint variables of each model (names and shapes: the checkpoint
  format);
- a 20-step `seqlvm train` run through the command line (the last
  TensorBoard training summary, a SHA-256 of every checkpoint tensor) and
  `seqlvm eval` and `seqlvm sample` of it.

    python experiments/golden.py --out before.json        # before a change
    python experiments/golden.py --check experiments/golden.json   # after

`--check` prints every difference and exits 1 if there is one. The numbers
are bit-identical only on the same kind of machine (oneDNN picks its
kernels by CPU). The committed experiments/golden.json was written on the
project's current 2-core machine by the code before the speed issue
(commit dde448e), which on the machine before it had checked bit-identical
to the code before the architecture issue's restructure; regenerate it
only for an intended change of numbers or a new machine, and say so in
the commit.

`--keep-run DIR` keeps the trained run directory, so that a later version of
the code can be checked to restore and evaluate it (`seqlvm eval DIR`).
"""

import argparse
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from seqlvm import bounds  # pylint: disable=wrong-import-position
from seqlvm import models  # pylint: disable=wrong-import-position

T, B, N, D = 9, 3, 3, 6
H, Z, C = 8, 4, 8
SEED = (3, 5)


def _hex(value):
  return float(value).hex()


def _digest(array):
  array = np.ascontiguousarray(np.asarray(array))
  return {"sha256": hashlib.sha256(array.tobytes()).hexdigest()[:16],
          "sum": _hex(np.sum(array, dtype=np.float64)),
          "shape": list(array.shape)}


def _data(emission, data_size=D):
  rng = np.random.RandomState(11)
  if emission == "bernoulli":
    x = (rng.rand(T, B, data_size) < 0.3).astype(np.float32)
  else:
    x = rng.randn(T, B, data_size).astype(np.float32)
  lengths = np.array([T, 6, 3][:B])
  mask = np.arange(T)[:, None] < lengths[None]
  return tf.constant(x * mask[..., None]), tf.constant(mask)


def golden_models():
  """name -> (model, emission)."""
  mean = np.linspace(0.1, 0.4, D)
  wavenet = dict(channels=C, dilations=(1, 2, 4))
  out = {}
  for emission in ("bernoulli", "gaussian"):
    common = dict(emission=emission, data_mean=mean, seed=2)
    latent = dict(hidden_size=H, latent_size=Z)
    out[f"vrnn/{emission}"] = models.VRNN(D, **latent, **common)
    out[f"srnn/{emission}"] = models.SRNN(D, **latent, **common)
    out[f"draw/{emission}"] = models.DRAW(D, **latent, **common)
    out[f"vrnn-wavenet/{emission}"] = models.VRNNWaveNet(
        D, **latent, **wavenet, **common)
    out[f"wavenet/{emission}"] = models.WaveNet(D, **wavenet, **common)
  out["vrnn/concrete"] = models.VRNN(D, hidden_size=H, latent="concrete",
                                     categories=5, emission="bernoulli",
                                     data_mean=mean, seed=2)
  out["vrnn-wavenet/concrete"] = models.VRNNWaveNet(
      D, hidden_size=H, latent="concrete", categories=5, emission="bernoulli",
      data_mean=mean, seed=2, **wavenet)
  rng = np.random.RandomState(0)
  q, _ = np.linalg.qr(rng.randn(3, 3))
  params = dict(transition_matrix=0.9 * q, transition_noise_scale=0.5,
                observation_matrix=rng.randn(D, 3),
                observation_noise_scale=0.8, initial_scale=1.0)
  for proposal in ("bootstrap", "filtering", "smoothing"):
    out[f"lgssm/{proposal}"] = models.LinearGaussianSSM(
        **params, proposal=proposal, dtype=tf.float32)
  return {k: (m, "gaussian" if "lgssm" in k or "gaussian" in k else
              "bernoulli") for k, m in out.items()}


def _bound_calls():
  """label -> (model, x, mask) -> bound [B]; eager (`compiled=False`), as
  the bounds ran when the golden numbers were recorded (the compiled graph
  agrees to float32 rounding, not bit for bit: tests/test_bounds.py)."""
  calls = {
      "elbo_n1": lambda m, x, k: bounds.elbo(m, x, k, num_particles=1,
                                             seed=SEED, compiled=False),
      "elbo_n3": lambda m, x, k: bounds.elbo(m, x, k, num_particles=N,
                                             seed=SEED, compiled=False),
      "iwae_n3": lambda m, x, k: bounds.iwae(m, x, k, num_particles=N,
                                             seed=SEED, compiled=False),
      "fivo_always": lambda m, x, k: bounds.fivo(
          m, x, k, num_particles=N, resampling="always", seed=SEED,
          compiled=False),
  }
  for scheme in ("multinomial", "systematic", "stratified", "residual"):
    calls[f"fivo_ess_{scheme}"] = (
        lambda m, x, k, s=scheme: bounds.fivo(
            m, x, k, num_particles=N, resampling="ess", threshold=0.9,
            scheme=s, seed=SEED, compiled=False))
  for gradient in ("score", "soft", "concrete"):
    calls[f"fivo_always_{gradient}"] = (
        lambda m, x, k, g=gradient: bounds.fivo(
            m, x, k, num_particles=N, resampling="always",
            resampling_gradient=g, soft_mixing=0.3,
            resampling_temperature=0.7, seed=SEED, compiled=False))
  return calls


def bound_numbers():
  out = {}
  calls = _bound_calls()
  for name, (model, emission) in golden_models().items():
    x, mask = _data(emission)
    variables = model.trainable_variables
    for label, call in calls.items():
      if not variables and label != "fivo_always":
        value = call(model, x, mask)
        out[f"{name}/{label}"] = [_hex(v) for v in value.numpy()]
        continue
      with tf.GradientTape() as tape:
        value = call(model, x, mask)
        loss = -tf.reduce_sum(value)
      entry = [_hex(v) for v in value.numpy()]
      if variables:
        grads = tape.gradient(loss, variables)
        entry.append(_hex(tf.linalg.global_norm(grads)))
      out[f"{name}/{label}"] = entry
    evaluated = model.for_evaluation()
    if evaluated is not model:
      out[f"{name}/hard_fivo"] = [_hex(v) for v in bounds.fivo(
          evaluated, x, mask, num_particles=N, seed=SEED,
          compiled=False).numpy()]
    print(f"  bounds: {name}", file=sys.stderr)
  return out


def samples_and_checkpoints(directory):
  out = {}
  for name, (model, _) in golden_models().items():
    sample = model.sample(7, 2, seed=SEED)
    out[f"{name}/sample"] = _digest(sample.numpy())
    prefix = tf.train.Checkpoint(model=model).write(
        os.path.join(directory, name.replace("/", "_")))
    out[f"{name}/checkpoint_variables"] = sorted(
        f"{key} {shape}" for key, shape in tf.train.list_variables(prefix)
        if "_CHECKPOINTABLE_OBJECT_GRAPH" not in key)
  return out


def _write_pianorolls(path):
  rng = np.random.RandomState(4)

  def piece():
    return [tuple(sorted(set(rng.randint(48, 72, size=3).tolist())))
            for _ in range(rng.randint(5, 30))]

  rolls = {"train": [piece() for _ in range(12)],
           "valid": [piece() for _ in range(4)],
           "test": [piece() for _ in range(4)]}
  with open(path, "wb") as f:
    pickle.dump(rolls, f)


def _last_summary(directory, tag):
  value = None
  for name in sorted(os.listdir(directory)):
    for event in tf.compat.v1.train.summary_iterator(
        os.path.join(directory, name)):
      for v in event.summary.value:
        if v.tag == tag:
          value = (event.step, _hex(tf.make_ndarray(v.tensor)))
  return value


def _eval_results(run):
  """{bound: {"ll_per_t", "ll_per_seq"}} of `seqlvm eval` at N = 3, seed 2:
  its records (RUN_DIR/eval/...) or, from a seqlvm before them,
  RUN_DIR/eval/test_n3.json."""
  old = os.path.join(run, "eval", "test_n3.json")
  if os.path.exists(old):
    with open(old) as f:
      return json.load(f)
  from seqlvm.run import records  # pylint: disable=g-import-not-at-top
  found = records.find(run, split="test", num_particles=3, seed=2)
  newest = max(r["step"] for r in found)
  return {r["bound"]: r for r in found if r["step"] == newest}


def command_line_run(directory, keep_run=None):
  from seqlvm import cli  # pylint: disable=g-import-not-at-top
  run = keep_run or os.path.join(directory, "run")
  if keep_run and os.path.exists(keep_run):
    shutil.rmtree(keep_run)
  # A kept run keeps its data beside it, so that it can be evaluated later.
  data = (keep_run.rstrip("/") + ".rolls.pkl" if keep_run else
          os.path.join(directory, "rolls.pkl"))
  _write_pianorolls(data)
  rc = cli.main(["train", "--run-dir", run, "--data", data, "--num-steps",
                 "20", "--batch-size", "4", "--hidden-size", "8",
                 "--latent-size", "4", "--summary-every", "5",
                 "--valid-every", "10", "--checkpoint-every", "10",
                 "--no-progress"])
  assert rc == 0, rc
  out = {"train/fivo_per_timestep": _last_summary(
      os.path.join(run, "train"), "fivo_per_timestep"),
         "valid/fivo_per_timestep": _last_summary(
             os.path.join(run, "valid"), "fivo_per_timestep")}
  reader = tf.train.load_checkpoint(os.path.join(run, "ckpt"))
  for key in sorted(reader.get_variable_to_shape_map()):
    if "_CHECKPOINTABLE_OBJECT_GRAPH" in key or "data_iterator" in key:
      continue
    out[f"checkpoint/{key}"] = _digest(reader.get_tensor(key))["sha256"]
  # The latest checkpoint, as every seqlvm before the best checkpoint used.
  rc = cli.main(["eval", run, "--num-particles", "3", "--no-progress",
                 "--seed", "2", "--checkpoint", "latest"])
  assert rc == 0, rc
  results = _eval_results(run)
  for name in ("elbo", "iwae", "fivo"):
    out[f"eval/{name}"] = [_hex(results[name]["ll_per_t"]),
                           _hex(results[name]["ll_per_seq"])]
  rc = cli.main(["sample", run, "--num", "2", "--steps", "12",
                 "--no-progress", "--seed", "1", "--checkpoint", "latest"])
  assert rc == 0, rc
  with np.load(os.path.join(run, "samples", "samples.npz")) as f:
    out["sample/x"] = _digest(f["x"])
    out["sample/means"] = _digest(f["means"])
  return out


def collect(keep_run=None):
  directory = tempfile.mkdtemp(prefix="seqlvm_golden_")
  try:
    numbers = {"versions": {"tensorflow": tf.__version__}}
    numbers.update(bound_numbers())
    numbers.update(samples_and_checkpoints(directory))
    numbers.update(command_line_run(directory, keep_run))
    return numbers
  finally:
    shutil.rmtree(directory, ignore_errors=True)


def _close(expected, actual, rtol):
  """Whether two entries agree to `rtol` (hex floats, lists of them)."""
  if isinstance(expected, list) and isinstance(actual, list):
    return len(expected) == len(actual) and all(
        _close(e, a, rtol) for e, a in zip(expected, actual))
  try:
    e, a = float.fromhex(expected), float.fromhex(actual)
  except (TypeError, ValueError):
    return False
  return abs(e - a) <= rtol * max(abs(e), abs(a))


def compare(expected, actual, rtol=0.):
  """Lines naming each difference (the versions entry is informative);
  entries that agree to `rtol` (relative) are named as such, not counted."""
  problems, close = [], []
  for key in sorted(set(expected) | set(actual)):
    if key == "versions":
      continue
    if key not in actual:
      problems.append(f"missing: {key}")
    elif key not in expected:
      problems.append(f"new: {key}")
    elif expected[key] != actual[key]:
      line = f"{key}: {expected[key]} -> {actual[key]}"
      if rtol and _close(expected[key], actual[key], rtol):
        close.append(f"within {rtol:g}: {line}")
      else:
        problems.append(f"differs: {line}")
  return problems, close


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", help="write the numbers here (JSON)")
  parser.add_argument("--check", help="compare with this JSON file")
  parser.add_argument("--keep-run", help="keep the trained run here")
  parser.add_argument("--rtol", type=float, default=0.,
                      help="with --check: entries that agree to this "
                      "relative tolerance are listed, not counted as "
                      "differences [0: bit-identical]")
  args = parser.parse_args()
  numbers = json.loads(json.dumps(collect(args.keep_run)))
  if args.out:
    with open(args.out, "w") as f:
      json.dump(numbers, f, indent=1, sort_keys=True)
      f.write("\n")
    print(f"Wrote {len(numbers)} entries to {args.out}")
  if args.check:
    with open(args.check) as f:
      expected = json.load(f)
    problems, close = compare(expected, numbers, args.rtol)
    for line in problems + close:
      print(line)
    identical = len(expected) - 1 - len(problems) - len(close)
    print(f"{len(expected) - 1} entries checked: {identical} identical, "
          f"{len(close)} within --rtol {args.rtol:g}, {len(problems)} "
          "differ.")
    return 1 if problems else 0
  return 0


if __name__ == "__main__":
  sys.exit(main())
