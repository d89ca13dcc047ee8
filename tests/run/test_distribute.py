"""Data-parallel training and evaluation (`seqlvm.run.distribute`).

Logical CPU devices and cluster workers need fresh processes: the cases run
in tests/run/distributed_cases.py (one process each) or through the CLI.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _case(*args, env=None, timeout=400):
  result = subprocess.run(
      [sys.executable, "-m", "tests.run.distributed_cases", *args],
      cwd=ROOT, capture_output=True, text=True, timeout=timeout,
      env={**os.environ, **(env or {})})
  lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
  assert result.returncode == 0 and lines, result.stderr[-3000:]
  return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
  from tests.conftest import write_tiny_pianorolls
  path = write_tiny_pianorolls(tmp_path_factory.mktemp("d") / "tiny.pkl")
  return _case("mirrored", path)


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_mirrored_step_equals_single_device_step(mirrored, mode):
  """Two logical CPU replicas on the global batch of 4 (2 sequences each,
  lengths 8, 5 | 7, 3) against one device: the LGSSM's IWAE with the
  smoothing proposal is exact, so noise cannot hide a difference."""
  assert mirrored["replicas"] == 2
  single, many = mirrored[mode]["single"], mirrored[mode]["mirrored"]
  assert single["applied"] and many["applied"]
  np.testing.assert_allclose(many["bound"], single["bound"], rtol=1e-6)
  np.testing.assert_allclose(many["grad_norm"], single["grad_norm"],
                             rtol=1e-5)
  # One Adam step moved the weights (lr 0.01), identically.
  np.testing.assert_allclose(many["weights"], single["weights"], rtol=0,
                             atol=2e-7)
  assert many["copies_equal"]
  # Each replica ran over its own longest sequence, not the global one.
  assert many["share_steps"] == [8, 7]


def test_all_padding_share_adds_exactly_zero(mirrored):
  padding = mirrored["padding"]
  # The replica's own contribution: exactly zero loss and gradient.
  assert padding["local"]["loss"] == 0.0
  assert padding["local"]["grad_abs_max"] == 0.0
  assert padding["local"]["steps"] == 1
  # So two replicas, the second all padding, train like one device on the
  # first share alone (and like one device on the padded global batch).
  first, many = padding["first_share_only"], padding["mirrored"]
  np.testing.assert_allclose(many["bound"], first["bound"], rtol=1e-6)
  np.testing.assert_allclose(many["weights"], first["weights"], atol=2e-7)
  np.testing.assert_allclose(padding["single"]["weights"], first["weights"],
                             atol=2e-7)
  assert many["share_steps"] == [8, 1]


def test_distributed_input_is_the_single_device_stream_split(mirrored):
  """From step 3 on, the replicas' shares are the single-device batches'
  sequences 0-1 and 2-3, each cut to its own longest sequence."""
  assert mirrored["input"] == {"same_sequences": True,
                               "cut_to_own_length": True}
