"""MuseData's long pieces: chunked training, evaluation over whole pieces."""

import numpy as np

from seqlvm import data
from seqlvm.run import evaluation
from seqlvm.run import factory
from seqlvm.run import training
from seqlvm.config import Config
from tests.conftest import shared_pianoroll


def test_musedata_trains_chunked_and_evaluates_whole(tmp_path):
  rolls = data.load_pianoroll(shared_pianoroll("musedata.pkl"))
  longest = sorted(rolls.test, key=len)[-3:]
  assert len(longest[-1]) == 4273
  train = sorted(rolls.train, key=len)[-4:]
  source = data.InMemorySource({"train": train, "valid": longest[:1],
                                "test": longest},
                               train_mean=rolls.train_mean)
  config = Config(data="musedata", hidden_size=8, latent_size=4,
                  batch_size=2, num_steps=3, max_length=128, valid_every=0,
                  checkpoint_every=3, jit_compile=False)

  def make(config):
    return source, factory.build_model(config, 88, rolls.train_mean)

  # Training sees pieces of at most 128 steps.
  for x, lengths in source.train_dataset(2, max_length=128,
                                         pad_to_multiple=32).take(4):
    assert x.shape[0] <= 128 and max(lengths) <= 128
  training.train(config, str(tmp_path / "run"), make_dataset_and_model=make,
                progress=False, log=lambda m: None)
  results = evaluation.evaluate(str(tmp_path / "run"), split="test",
                             num_particles=2, make_dataset_and_model=make,
                             progress=False)
  assert results["num_timesteps"] == sum(len(r) for r in longest)
  for name in ("elbo", "iwae", "fivo"):
    assert np.isfinite(results[name]["ll_per_t"])
    np.testing.assert_allclose(
        results[name]["ll_per_seq"] * 3 / results["num_timesteps"],
        results[name]["ll_per_t"], rtol=1e-6)
