"""The contract every sequence model implements.

A model is a `tf.Module` with four methods (DESIGN.md section 4):

    prepare(x, mask) -> context
        Work done once per batch, outside the particle loop: features of the
        observations for every step, backward summaries. A nest of time-major
        tensors `[T, B, ...]` (possibly empty).
    initial_state(batch_size) -> state
        A nest of tensors `[batch_size, ...]`; the sweep asks for N*B rows.
    step(state, context_t, x_t, seed) -> StepOutput
        One proposal draw and its log densities, one per row `[N*B]`. The
        sweep tiles `context_t` and `x_t` to the particles (row n*B + b).
    sample(num_steps, batch_size, seed) -> x
        Ancestral sampling from the generative model alone: `[T, B, D]`.

The incremental importance weight is log_p_z + log_p_x_given_z - log_q_z.
`models/` never imports `smc/`, `bounds` or `data/`.

Recommended import: `from seqlvm.models import SequenceModel, StepOutput`.
"""

import collections

import tensorflow as tf

__all__ = ["SequenceModel", "StepOutput"]

StepOutput = collections.namedtuple(
    "StepOutput",
    [
        "state",  # nest of [N*B, ...]: the state after this step.
        "log_p_z",  # float [N*B]: log p(z_t | history).
        "log_p_x_given_z",  # float [N*B]: log p(x_t | z_t, history).
        "log_q_z",  # float [N*B]: log q(z_t | history, context_t).
    ])


class SequenceModel(tf.Module):
  """Base class of the sequence models; subclasses fill in the contract."""

  def prepare(self, x, mask):
    """Per-batch features `[T, B, ...]`; the default has none."""
    del x, mask
    return ()

  def initial_state(self, batch_size):
    raise NotImplementedError

  def step(self, state, context_t, x_t, seed):
    raise NotImplementedError

  def sample(self, num_steps, batch_size, seed=None):
    raise NotImplementedError
