"""Config -> model and bound specification."""

import numpy as np
import pytest

from seqlvm import registry
from seqlvm.config import Config
from seqlvm.data import sources
from seqlvm.errors import ConfigError
from seqlvm.run import factory
from seqlvm.smc import criteria
from seqlvm.smc import gradients


@pytest.mark.parametrize("model", registry.MODELS.names)
def test_every_registered_model_is_built_from_a_config(model):
  config = Config(model=model, hidden_size=6, latent_size=3,
                  wavenet_channels=4, wavenet_layers=2)
  built = factory.build_model(config, data_size=5, data_mean=np.full(5, .2))
  assert isinstance(built, registry.MODELS.load(model))
  assert built.data_size == 5 and built.emission_type == "bernoulli"
  if registry.MODELS.meta(model, "has_latents"):
    assert built.hidden_size == 6
  if registry.MODELS.meta(model, "wavenet"):
    assert built.receptive_field == 2 ** 2 + 1


def test_concrete_latent_reaches_the_model():
  config = Config(latent="concrete", categories=7, latent_temperature=0.3)
  built = factory.build_model(config, data_size=5, data_mean=None)
  assert built.latent == "concrete" and built.latent_size == 7
  assert built.temperature == 0.3


def test_bound_spec_trains_with_the_configured_gradient_and_evaluates_with_stop():
  config = Config(resampling="ess", threshold=0.3,
                  resampling_gradient="soft", soft_mixing=0.2)
  train = factory.bound_spec(config, "fivo", 3)
  evaluate = factory.bound_spec(config, "fivo", 3, training=False)
  assert isinstance(train.resample_criterion_fn, criteria.EssBelowThreshold)
  assert train.resample_criterion_fn.threshold == 0.3
  assert isinstance(train.resampling_gradient, gradients.Soft)
  assert train.resampling_gradient.mixing == 0.2
  assert isinstance(evaluate.resampling_gradient, gradients.Stop)
  elbo = factory.bound_spec(config, "elbo", 3)
  assert elbo.final_reduction == "mean" and not (
      elbo.resample_criterion_fn.can_fire)


def test_resolve_emission():
  rolls = sources.InMemorySource({"train": [np.ones([3, 2], np.float32)]})
  speechlike = sources.InMemorySource(
      {"train": [np.ones([3, 2], np.float32)]}, kind="real")
  assert factory.resolve_emission(Config(), rolls) == "bernoulli"
  assert factory.resolve_emission(Config(), speechlike) == "gaussian"
  assert factory.resolve_emission(Config(emission="gaussian"),
                                  rolls) == "gaussian"
  with pytest.raises(ConfigError, match="needs binary data"):
    factory.resolve_emission(Config(emission="bernoulli"), speechlike)
