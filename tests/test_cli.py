"""Each model through the command line: XLA training, evaluation, sampling."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import eval_records
from seqlvm import bounds
from seqlvm import cli

SMALL = ["--hidden-size", "6", "--latent-size", "3", "--wavenet-channels",
         "5", "--wavenet-layers", "3", "--batch-size", "2", "--no-progress"]


@pytest.mark.parametrize("model", ["srnn", "draw", "vrnn-wavenet",
                                   "wavenet"])
def test_train_eval_sample_round_trip(model, tiny_pianorolls, tmp_path,
                                      capsys):
  run_dir = tmp_path / "run"
  # XLA except for the WaveNet, whose XLA step tests/models compiles.
  assert cli.main(["train", "--data", tiny_pianorolls, "--model", model,
                   "--run-dir", str(run_dir), "--num-steps", "2",
                   "--valid-every", "2"] + SMALL +
                  (["--no-jit"] if model == "wavenet" else [])) == 0
  assert json.loads((run_dir / "config.json").read_text())["model"] == model
  assert cli.main(["eval", str(run_dir), "--num-particles", "2",
                   "--no-progress"]) == 0
  results = eval_records(run_dir, "test", 2)
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


@pytest.mark.parametrize("bound,gradient", [
    ("iwae", "stop"), ("fivo", "score"), ("fivo", "soft"),
    ("fivo", "concrete")])
def test_concrete_latent_and_resampling_gradients_round_trip(
    bound, gradient, tiny_pianorolls, tmp_path, capsys):
  run_dir = tmp_path / "run"
  assert cli.main(["train", "--data", tiny_pianorolls, "--latent", "concrete",
                   "--categories", "4", "--latent-temperature", "0.5",
                   "--bound", bound, "--resampling-gradient", gradient,
                   "--resampling", "always", "--soft-mixing", "0.3",
                   "--resampling-temperature", "0.4", "--run-dir",
                   str(run_dir), "--num-steps", "2", "--valid-every", "2"] +
                  # XLA once (the concrete latent and the concrete gradient;
                  # every estimator compiles under XLA in tests/smc).
                  ([] if gradient == "concrete" else ["--no-jit"]) +
                  SMALL) == 0
  config = json.loads((run_dir / "config.json").read_text())
  assert (config["latent"], config["categories"],
          config["resampling_gradient"]) == ("concrete", 4, gradient)
  assert cli.main(["eval", str(run_dir), "--num-particles", "2",
                   "--no-progress"]) == 0
  results = eval_records(run_dir, "test", 2)
  values = [results[b]["ll_per_t"] for b in ("elbo", "iwae", "fivo")]
  assert all(np.isfinite(values))
  out = tmp_path / "samples"
  assert cli.main(["sample", str(run_dir), "--num", "2", "--steps", "5",
                   "--out", str(out)]) == 0
  assert np.load(out / "samples.npz")["x"].shape == (2, 5, 88)
  assert "Traceback" not in capsys.readouterr().err


def test_evaluation_uses_the_hard_model_and_the_plain_particle_filter():
  from seqlvm.config import Config  # pylint: disable=g-import-not-at-top
  from seqlvm.run import evaluation  # pylint: disable=g-import-not-at-top
  from seqlvm.run import factory  # pylint: disable=g-import-not-at-top
  config = Config(latent="concrete", categories=3, hidden_size=6,
                  resampling_gradient="concrete", resampling="always")
  model = factory.build_model(config, data_size=5, data_mean=None)
  evaluator = evaluation.Evaluator(model, config, 5)
  assert evaluator.model.hard and not model.hard
  x = tf.constant((np.random.RandomState(0).rand(6, 2, 5) < 0.3), tf.float32)
  mask = tf.ones([6, 2], tf.bool)
  # Evaluation's FIVO is the particle filter's log p_hat ("stop"), whatever
  # gradient training used; training's is the relaxed one.
  evaluate = factory.bound_spec(config, "fivo", 3, training=False)
  train = factory.bound_spec(config, "fivo", 3)
  plain = bounds.fivo(model.for_evaluation(), x, mask, num_particles=3,
                      resampling="always", seed=(1, 1))
  np.testing.assert_array_equal(evaluate(model.for_evaluation(), x, mask,
                                         (1, 1)), plain)
  # The evaluator's compiled function computes exactly that.
  compiled = evaluator.batch_fn("fivo", 3, 2)(x, tf.constant([6, 6]),
                                              tf.constant([1, 1]))
  np.testing.assert_allclose(compiled, plain, rtol=1e-5)
  relaxed_model = bounds.fivo(model, x, mask, num_particles=3,
                              resampling="always", seed=(1, 1))
  assert not np.allclose(compiled, relaxed_model)
  relaxed = bounds.fivo(model.for_evaluation(), x, mask, num_particles=3,
                        resampling="always", resampling_gradient="concrete",
                        resampling_temperature=0.5, seed=(1, 1))
  np.testing.assert_array_equal(train(model.for_evaluation(), x, mask,
                                      (1, 1)), relaxed)


@pytest.mark.parametrize("flags,message", [
    (["--resampling-gradient", "score", "--scheme", "systematic"],
     "the 'score' resampling gradient needs the multinomial scheme"),
    (["--soft-mixing", "1.5"], r"soft_mixing must be in \[0, 1\]"),
    (["--latent", "concrete", "--model", "srnn"],
     "latent concrete is only offered by models vrnn and vrnn-wavenet"),
    (["--categories", "1"], "categories must be >= 2"),
])
def test_bad_gradient_and_latent_flags_are_refused(flags, message,
                                                    tiny_pianorolls, tmp_path,
                                                    capsys):
  assert cli.main(["train", "--data", tiny_pianorolls, "--run-dir",
                   str(tmp_path / "run"), "--num-steps", "1"] + flags +
                  SMALL) == 2
  err = capsys.readouterr().err
  assert re.search(message, err), err
  assert "Traceback" not in err


def test_version(capsys):
  import seqlvm  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as info:
    cli.main(["--version"])
  assert info.value.code == 0
  assert capsys.readouterr().out.strip() == f"seqlvm {seqlvm.__version__}"
