"""The public Evaluator: a bound over a whole split."""

import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from seqlvm import data
from seqlvm import interrupts
from seqlvm import shapes
from seqlvm.config import Config
from seqlvm.data import sources
from seqlvm.errors import TrainingError
from seqlvm.run import evaluation
from seqlvm.run import factory


def _source(seed=0):
  rng = np.random.RandomState(seed)
  split = [(rng.rand(n, 5) < 0.3).astype(np.float32) for n in (7, 3, 5)]
  return sources.InMemorySource({"train": split, "valid": split,
                                 "test": split})


def test_evaluator_sums_the_bounds_of_every_sequence():
  source = _source()
  config = Config(hidden_size=6, latent_size=3, pad_to_multiple=1)
  model = factory.build_model(config, 5, source.train_mean)
  evaluator = evaluation.Evaluator(model, config, 5)
  result = evaluator(source, "test", "iwae", num_particles=2, batch_size=2)
  assert isinstance(result, evaluation.SplitBound)
  assert result.values.shape == (3,)
  np.testing.assert_allclose(result.per_timestep,
                             result.values.sum() / (7 + 3 + 5))
  np.testing.assert_allclose(result.per_sequence, result.values.mean())


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_exact_model_gives_its_log_likelihood_at_any_batch_size(batch_size):
  # WaveNet has no latents: every bound is its exact log p(x), so the split
  # total is known whatever the batching and padding.
  source = _source(1)
  config = Config(model="wavenet", wavenet_channels=4, wavenet_layers=2,
                  pad_to_multiple=4)
  model = factory.build_model(config, 5, source.train_mean)
  x, lengths = data.pad_batch(source.sequences("test"))
  mask = shapes.sequence_mask(lengths, x.shape[0])
  exact = model.log_likelihood(tf.constant(x), mask).numpy().sum()
  evaluator = evaluation.Evaluator(model, config, 5)
  for name in ("elbo", "iwae", "fivo"):
    result = evaluator(source, "test", name, num_particles=3,
                       batch_size=batch_size)
    np.testing.assert_allclose(result.values.sum(), exact, rtol=1e-5)
    np.testing.assert_allclose(result.per_timestep, exact / 15, rtol=1e-5)


def test_xla_evaluation_equals_the_graphs():
  """With and without XLA the same numbers where the bound does not depend
  on the random draws (WaveNet: exact), at padded lengths 4 and 8; the default
  is the graph (faster for one pass: experiments/bench_eval.py)."""
  source = _source(1)
  config = Config(model="wavenet", wavenet_channels=4, wavenet_layers=2,
                  pad_to_multiple=4)
  model = factory.build_model(config, 5, source.train_mean)
  graph = evaluation.Evaluator(model, config, 5)
  xla = evaluation.Evaluator(model, config, 5, xla=True)
  assert not graph.xla and xla.xla
  for name in ("iwae", "fivo"):
    a = graph(source, "test", name, num_particles=3, batch_size=1)
    b = xla(source, "test", name, num_particles=3, batch_size=1)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(b.values, a.values, rtol=1e-6)
    np.testing.assert_allclose(b.per_timestep, a.per_timestep, rtol=1e-6)


def test_a_non_finite_bound_is_an_error_not_a_number():
  source = _source()
  config = Config(hidden_size=6, latent_size=3, emission="gaussian")
  model = factory.build_model(config, 5, None)
  model.emission.net.out.b.assign(tf.fill([10], np.float32(np.nan)))
  evaluator = evaluation.Evaluator(model, config, 5)
  with pytest.raises(TrainingError, match="not finite for 3 sequence"):
    evaluator(source, "valid", "fivo", num_particles=2, batch_size=3)


def test_a_signal_during_a_batch_stops_before_the_next_one():
  # The batch function as TensorFlow runs it: an exception raised inside
  # would come back as a RuntimeError (pybind11), the SIGTERM lost.
  source = _source()
  config = Config(hidden_size=6, latent_size=3, pad_to_multiple=1)
  model = factory.build_model(config, 5, source.train_mean)
  evaluator = evaluation.Evaluator(model, config, 5)
  fn = evaluator.batch_fn("iwae", 2, 1, diagnostics=True)
  calls = []

  def signalled(*args):
    calls.append(len(calls))
    try:
      os.kill(os.getpid(), signal.SIGTERM)
      for _ in range(1000):  # Where the handler runs.
        pass
      return fn(*args)
    except BaseException as e:  # pylint: disable=broad-except
      raise RuntimeError(f"pybind11::error_already_set: {e!r}") from None

  evaluator._fns[("iwae", 2, 1, True)] = signalled  # pylint: disable=protected-access
  previous = interrupts.catch_sigterm()
  try:
    with pytest.raises(interrupts.Terminated):
      evaluator(source, "test", "iwae", num_particles=2, batch_size=1)
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert calls == [0]  # Three batches; stopped after the first.
