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

and optionally `for_evaluation()`, the model to evaluate (the default is the
model itself; a model trained with relaxed latents returns its hard twin).

Partial observations (`seqlvm.infer`). A model that can condition on some
entries of x_t only says so with `check_partial_observations()` (the
default refuses, with a message naming the model) and takes
`step(..., observed=...)`, a bool `[N*B, D]`: the weight uses the
emission's log density of the observed entries only, the others are drawn
from the emission given the particle's latent (and the observed entries),
and the completed x_t is returned as `StepOutput.x`. A step with no
observed entry adds exactly zero to the log weight. The sweep starts from
`partial_initial_state`, and `prepare` must be given x with its missing
entries at a fixed value (`seqlvm.infer` uses the training mean), so that
the proposal depends on the observed entries only: the weight is then the
exact p/q of what was proposed.

The incremental importance weight is log_p_z + log_p_x_given_z - log_q_z.
`models/` never imports `smc/`, `bounds` or `data/`.

Recommended import: `from seqlvm.models import SequenceModel, StepOutput`.
"""

import collections

import numpy as np
import tensorflow as tf

from seqlvm import registry

__all__ = ["SequenceModel", "StepOutput", "EMISSIONS", "checked_mean"]

EMISSIONS = registry.EMISSIONS.names

StepOutput = collections.namedtuple(
    "StepOutput",
    [
        "state",  # nest of [N*B, ...]: the state after this step.
        "log_p_z",  # float [N*B]: log p(z_t | history).
        "log_p_x_given_z",  # float [N*B]: log p(x_t | z_t, history); of the
                            # observed entries only, given `observed`.
        "log_q_z",  # float [N*B]: log q(z_t | history, context_t).
        "x",  # float [N*B, D] or None: given `observed`, x_t completed (the
              # observed entries, the others drawn from the emission).
    ],
    defaults=(None,))


def checked_mean(data_mean, data_size):
  """The training mean as float64 `[D]` (zeros for None), shape-checked."""
  mean = np.zeros([data_size]) if data_mean is None else np.asarray(
      data_mean, np.float64)
  if mean.shape != (data_size,):
    raise ValueError(f"data_mean must have shape [{data_size}], got "
                     f"{mean.shape}.")
  return mean


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

  def partial_initial_state(self, batch_size):
    """The state a partial-observation sweep starts from (a model whose
    step then carries more, such as features of its completed x_{t-1},
    says so here). Default value: `initial_state`."""
    return self.initial_state(batch_size)

  def check_partial_observations(self):
    """Raises ValueError unless this model can take `step(...,
    observed=...)` (see the module docstring)."""
    raise ValueError(f"{type(self).__name__} does not take partial "
                     "observations (impute, continuation, harmonisation).")

  def proposal_modules(self):
    """The submodules that only the proposal q reads: its network and, for
    a proposal that reads ahead, the RNN that does (SRNN's backward LSTM,
    DRAW's encoder). Training with `Config.proposal_bound` gives their
    variables that bound's gradient. Default: none (no proposal of its
    own)."""
    return ()

  @property
  def proposal_variables(self):
    """The trainable variables of `proposal_modules`, in their order."""
    return tuple(v for module in self.proposal_modules()
                 for v in module.trainable_variables)

  def for_evaluation(self):
    """The model whose bounds are reported: itself, unless training relaxes
    something that evaluation must not (see `VRNN`'s concrete latent)."""
    return self

  def _init_data(self, data_size, emission, data_mean, dtype, **sizes):
    """Checks and stores what every model needs to know about its data.

    Sets `data_size`, `emission_type`, `dtype` and the non-trainable
    `data_mean` variable (zeros if `data_mean` is None).

    Args:
      data_size: int D.
      emission: one of `EMISSIONS`.
      data_mean: optional `[D]` training mean.
      dtype: the model's float dtype.
      **sizes: further sizes (hidden_size=..., latent_size=...) that must be
        positive integers.

    Returns:
      mean: float64 `[D]`, for initialising emission biases.

    Raises:
      ValueError: for an unknown emission, a size below 1 or a mean of the
        wrong shape.
    """
    if emission not in EMISSIONS:
      raise ValueError(f"Unknown emission {emission!r}; choose one of "
                       f"{', '.join(EMISSIONS)}.")
    for label, value in (("data_size", data_size),) + tuple(sizes.items()):
      if int(value) < 1:
        raise ValueError(f"{label} must be a positive integer, got {value}.")
    mean = checked_mean(data_mean, data_size)
    self.data_size = data_size
    self.emission_type = emission
    self.dtype = dtype
    self.data_mean = tf.Variable(tf.cast(mean, dtype), trainable=False,
                                 name="data_mean")
    return mean

  def _centre(self, x):
    """x minus the training mean: what the networks read."""
    return tf.cast(x, self.dtype) - self.data_mean

  def _sample_loop(self, num_steps, batch_size, carry, step_fn,
                   return_means, progress_fn=None):
    """Ancestral sampling in one `tf.while_loop`.

    Args:
      num_steps: int T.
      batch_size: int B.
      carry: the nest the steps pass on (recurrent states, caches).
      step_fn: (t, carry, previous_x) -> (carry, x_t, mean_t), where
        previous_x is the centred previous sample (zeros at t = 0) and x_t,
        mean_t are `[B, D]`.
      return_means: also return the stacked means.
      progress_fn: optional callable given the index t of each finished
        step, as a Python int (for a progress bar or a time budget; an
        exception it raises stops sampling). Called from Python when run
        eagerly, through `tf.numpy_function` inside a graph.

    Returns:
      x: `[T, B, D]`, and means `[T, B, D]` if `return_means`.
    """
    def body(t, carry, previous_x, xs, means):
      carry, x, mean = step_fn(t, carry, previous_x)
      if progress_fn is not None:
        _report_step(progress_fn, t, x)
      return (t + 1, carry, self._centre(x), xs.write(t, x),
              means.write(t, mean))

    loop_vars = (tf.constant(0), carry,
                 tf.zeros([batch_size, self.data_size], self.dtype),
                 tf.TensorArray(self.dtype, size=num_steps),
                 tf.TensorArray(self.dtype, size=num_steps))
    _, _, _, xs, means = tf.while_loop(lambda t, *_: t < num_steps, body,
                                       loop_vars)
    if return_means:
      return xs.stack(), means.stack()
    return xs.stack()


def _report_step(progress_fn, t, x):
  """Calls progress_fn(t) once step t (whose sample is x) is done."""
  if tf.executing_eagerly():
    progress_fn(int(t))
    return
  with tf.control_dependencies([x]):
    tf.numpy_function(lambda step: progress_fn(int(step)) or np.int32(0),
                      [t], tf.int32, stateful=True)
