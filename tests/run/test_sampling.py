"""Sampling with a progress bar and a time budget."""

import numpy as np
import pytest

from seqlvm.errors import SamplingBudgetError
from seqlvm.models import VRNN
from seqlvm.run import sampling


def test_draw_returns_batch_major_samples_and_their_means():
  model = VRNN(5, hidden_size=6, latent_size=3)
  x, means = sampling.draw(model, steps=7, num=3, seed=1, progress=False,
                           max_seconds=60)
  assert x.shape == means.shape == (3, 7, 5)
  assert set(np.unique(x)) <= {0., 1.}
  assert np.all((means > 0) & (means < 1))
  again, _ = sampling.draw(model, 7, 3, 1, False, 60)
  np.testing.assert_array_equal(x, again)


def test_a_spent_budget_stops_sampling_and_says_how_long_it_would_take():
  model = VRNN(5, hidden_size=6, latent_size=3)
  with pytest.raises(SamplingBudgetError, match="Nothing was written"):
    sampling.draw(model, steps=50, num=2, seed=0, progress=False,
                  max_seconds=1e-9)
