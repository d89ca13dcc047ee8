"""Each model through the command line: XLA training, evaluation, sampling."""

import json

import numpy as np
import pytest

from seqlvm import cli

SMALL = ["--hidden-size", "6", "--latent-size", "3", "--wavenet-channels",
         "5", "--wavenet-layers", "3", "--batch-size", "2", "--no-progress"]


@pytest.mark.parametrize("model", ["srnn", "draw", "vrnn-wavenet",
                                   "wavenet"])
def test_train_eval_sample_round_trip(model, tiny_pianorolls, tmp_path,
                                      capsys):
  run_dir = tmp_path / "run"
  assert cli.main(["train", "--data", tiny_pianorolls, "--model", model,
                   "--run-dir", str(run_dir), "--num-steps", "2",
                   "--valid-every", "2"] + SMALL) == 0
  assert json.loads((run_dir / "config.json").read_text())["model"] == model
  assert cli.main(["eval", str(run_dir), "--num-particles", "2",
                   "--no-progress"]) == 0
  results = json.loads((run_dir / "eval" / "test_n2.json").read_text())
  values = [results[b]["ll_per_t"] for b in ("elbo", "iwae", "fivo")]
  assert all(np.isfinite(values))
  if model == "wavenet":  # No latents: every bound is the exact likelihood.
    np.testing.assert_allclose(values, values[0], rtol=1e-5)
  out = tmp_path / "samples"
  assert cli.main(["sample", str(run_dir), "--num", "2", "--steps", "9",
                   "--out", str(out)]) == 0
  x = np.load(out / "samples.npz")["x"]
  assert x.shape == (2, 9, 88) and set(np.unique(x)) <= {0., 1.}
  assert "Traceback" not in capsys.readouterr().err
