"""Evaluation records: paths, statistics against numpy, combining seeds."""

import math
import os

import numpy as np
import pytest

from seqlvm.run import records


def test_standard_errors_match_numpy():
  rng = np.random.RandomState(3)
  lengths = rng.randint(20, 200, size=40)
  values = -7.5 * lengths + rng.randn(40) * 15.
  stats = records.summarize(values, lengths)
  n = len(values)
  assert stats["ll_per_seq"] == pytest.approx(np.mean(values))
  assert stats["ll_per_seq_se"] == pytest.approx(
      np.std(values, ddof=1) / math.sqrt(n))
  ratio = values.sum() / lengths.sum()
  assert stats["ll_per_t"] == pytest.approx(ratio)
  # The ratio estimator's delta-method variance from the sample covariance.
  cov = np.cov(values, lengths)  # ddof=1
  var = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio ** 2 * cov[1, 1]) / (
      n * np.mean(lengths) ** 2)
  assert stats["ll_per_t_se"] == pytest.approx(math.sqrt(var))
  # One sequence: no standard error.
  single = records.summarize([-10.], [5])
  assert single["ll_per_t"] == -2. and math.isnan(single["ll_per_t_se"])


def test_combining_seeds():
  lengths = [10, 20, 30]
  a = {"seed": 0, "lengths": lengths, "values": [-10., -21., -29.],
       "ll_per_t": -60 / 60, "ess_mean_fraction": 0.5}
  b = {"seed": 1, "lengths": lengths, "values": [-12., -19., -33.],
       "ll_per_t": -64 / 60, "ess_mean_fraction": 0.7}
  c = records.combine([a, b])
  mean = np.mean([a["values"], b["values"]], axis=0)
  assert c["ll_per_t"] == pytest.approx(mean.sum() / 60)
  assert c["ll_per_seq_se"] == pytest.approx(
      np.std(mean, ddof=1) / math.sqrt(3))
  assert c["spread"] == pytest.approx(np.std([-1., -64 / 60], ddof=1))
  assert c["log_p_hat_variance"] == pytest.approx(
      np.var([a["values"], b["values"]], axis=0, ddof=1).mean())
  assert c["seeds"] == [0, 1] and c["ess_mean_fraction"] == pytest.approx(0.6)
  assert math.isnan(records.combine([a])["spread"])
  with pytest.raises(ValueError, match="different sequences"):
    records.combine([a, {**b, "lengths": [1, 2, 3]}])


def test_averaging_seeds():
  a = {"seed": 0, "lengths": [10, 20], "values": [-10., -21.]}
  b = {"seed": 1, "lengths": [10, 20], "values": [-12., -19.]}
  assert records.average([a, b]) == {"values": [-11., -20.],
                                     "lengths": [10, 20]}
  assert records.average([a]) == {"values": [-10., -21.], "lengths": [10, 20]}
  with pytest.raises(ValueError, match="No records"):
    records.average([])
  with pytest.raises(ValueError, match="different sequences"):
    records.average([a, {**b, "lengths": [10, 21]}])


def test_paired_difference():
  rng = np.random.RandomState(5)
  lengths = rng.randint(20, 200, size=30)
  # Two runs whose bounds share each sequence's difficulty: the paired
  # difference is far more precise than either record's own error.
  hard = rng.randn(30) * 2.
  a = {"lengths": list(lengths),
       "values": list((-7. + hard) * lengths + rng.randn(30))}
  b = {"lengths": list(lengths),
       "values": list((-7.2 + hard) * lengths + rng.randn(30))}
  d = records.difference(a, b)
  expected = records.summarize(np.subtract(a["values"], b["values"]),
                               lengths)
  assert d == expected
  assert d["ll_per_t"] == pytest.approx(
      (np.sum(a["values"]) - np.sum(b["values"])) / lengths.sum())
  assert d["ll_per_t"] == pytest.approx(0.2, abs=0.01)
  own = records.summarize(a["values"], lengths)["ll_per_t_se"]
  assert d["ll_per_t_se"] < own / 20
  same = records.difference(a, a)
  assert same["ll_per_t"] == 0. and same["ll_per_t_se"] == 0.
  with pytest.raises(ValueError, match="different sequences"):
    records.difference(a, {"lengths": list(lengths[:-1]),
                           "values": b["values"][:-1]})


def test_one_file_per_evaluation(tmp_path):
  base = {"split": "test", "checkpoint": "best/ckpt-40", "bound": "fivo",
          "num_particles": 4, "seed": 0, "batch_size": 4, "values": [-1.],
          "lengths": [1], "ll_per_t": -1.}
  first = records.write(base, tmp_path)
  second = records.write({**base, "seed": 1}, tmp_path)
  third = records.write({**base, "checkpoint": "ckpt/ckpt-40"}, tmp_path)
  assert first.endswith("eval/test/best-40/fivo_n4_seed0_b4.json")
  assert third.endswith("eval/test/ckpt-40/fivo_n4_seed0_b4.json")
  # An XLA evaluation (other random streams) is another record, stored
  # where `record_path` (and so `RunEvaluation`'s reuse) looks for it.
  fourth = records.write({**base, "xla": True}, tmp_path)
  assert fourth.endswith("eval/test/best-40/fivo_n4_seed0_b4_xla.json")
  assert fourth == records.record_path(tmp_path, "test", "best/ckpt-40",
                                       "fivo", 4, 0, 4, xla=True)
  assert len({first, second, third, fourth}) == 4
  # find keeps them apart: graph records by default, XLA ones when asked.
  assert [r["seed"] for r in records.find(tmp_path, checkpoint="best/ckpt-40")
          ] == [0, 1]
  assert [r.get("xla") for r in records.find(
      tmp_path, checkpoint="best/ckpt-40", seed=0, xla=True)] == [True]
  assert len(records.find(tmp_path, seed=0, xla=None)) == 3
  os.remove(fourth)
  assert [r["seed"] for r in records.find(tmp_path, checkpoint="best/ckpt-40")
          ] == [0, 1]
  assert len(records.find(tmp_path, seed=0)) == 2
  # A damaged or incomplete record is not found (it is computed again).
  with open(second, "w") as f:
    f.write("{")
  assert records.read(second) is None
  assert len(records.find(tmp_path, checkpoint="best/ckpt-40")) == 1


def test_compare_labels_differ_for_runs_with_the_same_folder_name():
  from seqlvm.config import Config  # pylint: disable=g-import-not-at-top
  from seqlvm.run import compare  # pylint: disable=g-import-not-at-top
  configs = [Config(bound="fivo"), Config(bound="iwae")]
  assert compare.run_labels(["a/x", "b/x"], configs) == [
      "bound=fivo", "bound=iwae"]
  same = [Config(), Config()]
  assert compare.run_labels(["a/fivo", "b/fivo"], same) == [
      "fivo (a/fivo)", "fivo (b/fivo)"]
  assert len(set(compare.run_labels(["r", "r"], same))) == 2
  # without configs: the folder's name, and the path where names repeat
  assert compare.run_labels(["a/fivo", "b/iwae/"]) == ["fivo", "iwae"]
  assert compare.run_labels(["a/fivo", "b/fivo"]) == [
      "fivo (a/fivo)", "fivo (b/fivo)"]
