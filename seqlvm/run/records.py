"""Evaluation records: one JSON file per evaluation, never overwritten by
another, and the statistics computed from them.

    RUN_DIR/eval/SPLIT/CHECKPOINT/BOUND_nN_seedS_bB.json

CHECKPOINT is the checkpoint's tag (`ckpt-2000` for RUN_DIR/ckpt/ckpt-2000,
`best-1500` for RUN_DIR/best/ckpt-1500, `kept-5000` for
RUN_DIR/kept/ckpt-5000); B is the batch size, which decides
how sequences share a batch and so the random numbers each one sees. A
record holds each sequence's bound and length in the split's order (so
standard errors and paired differences between records can be computed),
the summaries with their standard errors, the particle filter's diagnostics
and the versions that computed it. The checkpoint's index digest is stored
too: a record is reused only for the very checkpoint it was computed from.

Statistics (all in nats):
- per sequence: the mean of the bounds v_i, with standard error
  std(v, ddof=1) / sqrt(n);
- per timestep: the ratio r = sum(v) / sum(L) of bounds to lengths, with the
  ratio estimator's standard error
  sqrt(sum((v_i - r L_i)^2) / (n (n - 1))) / mean(L).
Two records of the same sequences are compared by their paired difference,
each sequence's bound in one minus its bound in the other, summarised the
same way. Several seeds (independent sweeps of the same sequences) are combined by
averaging each sequence's bound over the seeds first; their spread is the
standard deviation over seeds of the per-timestep number, and the variance
of log p_hat is each sequence's variance over seeds, averaged.

Recommended import: `from seqlvm.run import records`.
"""

import glob
import hashlib
import json
import math
import os

import numpy as np

from seqlvm import fileio

__all__ = ["EVAL_DIR", "checkpoint_tag", "record_path", "checkpoint_digest",
           "summarize", "combine", "difference", "read", "write", "find"]

EVAL_DIR = "eval"
# The fields a readable record must have.
_REQUIRED = ("split", "checkpoint", "bound", "num_particles", "seed",
             "batch_size", "values", "lengths", "ll_per_t")


def checkpoint_tag(checkpoint):
  """'ckpt/ckpt-2000' -> 'ckpt-2000'; 'best/ckpt-1500' -> 'best-1500';
  'kept/ckpt-5000' -> 'kept-5000'."""
  folder, name = os.path.split(os.path.normpath(checkpoint))
  if os.path.basename(folder) in ("best", "kept"):
    return os.path.basename(folder) + "-" + name.rsplit("-", 1)[-1]
  return name


def record_path(run_dir, split, checkpoint, bound, num_particles, seed,
                batch_size, xla=False):
  """Where the record of one evaluation lives (XLA's random streams are not
  TensorFlow's: an evaluation compiled with XLA is another record)."""
  return os.path.join(os.fspath(run_dir), EVAL_DIR, split,
                      checkpoint_tag(checkpoint),
                      f"{bound}_n{num_particles}_seed{seed}_b{batch_size}"
                      f"{'_xla' if xla else ''}.json")


def checkpoint_digest(prefix):
  """A digest of the checkpoint's .index file (it holds a checksum of every
  tensor, so it names the weights), or "" if it cannot be read."""
  try:
    with open(os.fspath(prefix) + ".index", "rb") as f:
      return hashlib.sha256(f.read()).hexdigest()
  except OSError:
    return ""


def summarize(values, lengths):
  """Means and standard errors of per-sequence bounds.

  Args:
    values: float `[n]`, each sequence's bound (nats).
    lengths: int `[n]`, each sequence's number of timesteps.

  Returns:
    dict with ll_per_t, ll_per_t_se, ll_per_seq, ll_per_seq_se (a standard
    error is NaN for a single sequence).
  """
  v = np.asarray(values, np.float64)
  n_steps = np.asarray(lengths, np.float64)
  n = len(v)
  ratio = v.sum() / max(n_steps.sum(), 1.)
  if n > 1:
    seq_se = v.std(ddof=1) / math.sqrt(n)
    residual = v - ratio * n_steps
    t_se = math.sqrt((residual ** 2).sum() / (n * (n - 1))) / n_steps.mean()
  else:
    seq_se = t_se = float("nan")
  return {"ll_per_t": float(ratio), "ll_per_t_se": float(t_se),
          "ll_per_seq": float(v.mean()), "ll_per_seq_se": float(seq_se)}


def average(recs):
  """One record of the same sequences as `recs` (one per seed) whose
  per-sequence bounds are their mean over the records: what `combine`
  summarizes, and what `difference` pairs when each side has several
  seeds.

  Raises:
    ValueError: if there are no records, or they are not of the same
      sequences.
  """
  if not recs:
    raise ValueError("No records to average.")
  lengths = recs[0]["lengths"]
  if any(r["lengths"] != lengths for r in recs):
    raise ValueError("Records of different sequences cannot be averaged.")
  values = np.array([r["values"] for r in recs], np.float64)  # [K, n]
  return {"values": values.mean(axis=0).tolist(), "lengths": lengths}


def combine(recs):
  """The summary of one or more records of the same sequences (different
  seeds): the statistics of the seed-averaged bounds, plus "seeds",
  "spread" (the standard deviation over seeds of ll_per_t, NaN for one
  seed), "log_p_hat_variance" (each sequence's variance over seeds,
  averaged; NaN for one seed) and the diagnostics averaged over seeds.

  Raises:
    ValueError: if the records are not of the same sequences.
  """
  mean = average(recs)
  values = np.array([r["values"] for r in recs], np.float64)  # [K, n]
  summary = summarize(mean["values"], mean["lengths"])
  many = len(recs) > 1
  summary.update(
      seeds=[r["seed"] for r in recs],
      spread=float(np.std([r["ll_per_t"] for r in recs], ddof=1))
      if many else float("nan"),
      log_p_hat_variance=float(values.var(axis=0, ddof=1).mean())
      if many else float("nan"))
  for key in ("ess_mean_fraction", "ess_min_fraction", "resampling_rate"):
    found = [r[key] for r in recs if key in r]
    if found:
      summary[key] = float(np.mean(found))
  return summary


def difference(a, b):
  """The paired difference of two records of the same sequences (two runs,
  or two bounds, on one split): the statistics of each sequence's bound in
  `a` minus its bound in `b`. Pairing removes the spread between sequences,
  which dominates either record's own standard error, so the difference's
  standard error is what says whether `a` beats `b`.

  Raises:
    ValueError: if the records are not of the same sequences.
  """
  if a["lengths"] != b["lengths"]:
    raise ValueError("Records of different sequences cannot be paired.")
  return summarize(np.subtract(np.asarray(a["values"], np.float64),
                               np.asarray(b["values"], np.float64)),
                   a["lengths"])


def read(path):
  """A record, or None when it is missing, unreadable or incomplete."""
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(record, dict) or any(k not in record for k in _REQUIRED):
    return None
  return record


def write(record, run_dir):
  """Writes `record` atomically at its `record_path`; returns the path."""
  path = record_path(run_dir, record["split"], record["checkpoint"],
                     record["bound"], record["num_particles"],
                     record["seed"], record["batch_size"],
                     record.get("xla", False))
  fileio.write_json(record, path)
  return path


def find(run_dir, split="*", checkpoint="*", bound="*", num_particles="*",
         seed="*", batch_size="*", xla=False):
  """The readable records of a run that match (glob patterns or values),
  sorted by path: those of graph evaluations, or with `xla` of XLA ones
  (other random streams), or with xla=None both."""
  tag = checkpoint if checkpoint == "*" else checkpoint_tag(checkpoint)
  pattern = os.path.join(
      os.fspath(run_dir), EVAL_DIR, str(split), tag,
      f"{bound}_n{num_particles}_seed{seed}_b{batch_size}*.json")
  found = [read(p) for p in sorted(glob.glob(pattern))]
  return [r for r in found if r is not None and (
      xla is None or bool(r.get("xla", False)) == bool(xla))]
