"""Conditional distribution heads: inputs `[R, ...]` -> a TFP distribution.

Each head returns a distribution with `batch_shape [R]` and `event_shape [D]`
(`tfd.Independent`), so `log_prob` gives one number per row (per particle).

Recommended import: `from seqlvm.models import heads`.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.models import nets

tfd = tfp.distributions

__all__ = ["ConditionalNormal", "ConditionalBernoulli", "ConditionalLogits",
           "logit"]


def logit(p, eps=1e-4):
  """logit(clip(p)), the FIVO initial emission bias for a Bernoulli mean p."""
  p = np.clip(np.asarray(p, np.float64), eps, 1. - eps)
  return np.log(p) - np.log1p(-p)


class ConditionalNormal(tf.Module):
  """A diagonal Gaussian whose mean and scale an MLP computes from its inputs.

  scale = max(softplus(raw + raw_scale_bias), min_scale), as in FIVO's
  `ConditionalNormalDistribution`.

  Args:
    input_size: int, the size of the concatenated inputs.
    hidden_sizes: list of ints.
    event_size: int D.
    min_scale: float. Default value: 1e-3 (FIVO uses 0; a floor keeps the
      log density finite in float32).
    raw_scale_bias: float. Default value: 0.5 (as FIVO's runners).
    loc_bias_init: optional initial bias of the mean `[D]`.
  """

  def __init__(self, input_size, hidden_sizes, event_size, seed=0,
               min_scale=1e-3, raw_scale_bias=0.5, loc_bias_init=None,
               dtype=tf.float32, name=None):
    super().__init__(name=name)
    self.event_size = event_size
    self.min_scale = min_scale
    self.raw_scale_bias = raw_scale_bias
    bias = None
    if loc_bias_init is not None:
      bias = np.concatenate([
          np.broadcast_to(loc_bias_init, [event_size]),
          np.zeros([event_size])])
    self.net = nets.MLP(input_size, hidden_sizes, 2 * event_size, seed=seed,
                        output_bias_init=bias, dtype=dtype, name="net")

  def params(self, *inputs, offset=None):
    """Mean and scale; `offset` is a precomputed part of the first layer
    (see `nets.Linear.project`) for inputs that come after `inputs`."""
    out = self.net(tf.concat(inputs, axis=-1), offset=offset)
    loc, raw_scale = tf.split(out, 2, axis=-1)
    scale = tf.maximum(tf.nn.softplus(raw_scale + self.raw_scale_bias),
                       self.min_scale)
    return loc, scale

  def __call__(self, *inputs, loc_offset=None, offset=None):
    loc, scale = self.params(*inputs, offset=offset)
    if loc_offset is not None:
      loc = loc + loc_offset
    return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)

  def flops_per_row(self):
    return self.net.flops_per_row()


class ConditionalLogits(tf.Module):
  """Unnormalised log-probabilities `[R, K]` of a categorical, from an MLP.

  The model builds the distribution over them (a Concrete relaxation when
  training, the categorical itself when evaluating).

  Args:
    input_size: int.
    hidden_sizes: list of ints.
    num_classes: int K.
  """

  def __init__(self, input_size, hidden_sizes, num_classes, seed=0,
               dtype=tf.float32, name=None):
    super().__init__(name=name)
    self.event_size = num_classes
    self.net = nets.MLP(input_size, hidden_sizes, num_classes, seed=seed,
                        dtype=dtype, name="net")

  def __call__(self, *inputs, offset=None):
    return self.net(tf.concat(inputs, axis=-1), offset=offset)

  def flops_per_row(self):
    return self.net.flops_per_row()


class ConditionalBernoulli(tf.Module):
  """Independent Bernoullis whose logits an MLP computes from its inputs.

  Args:
    input_size: int.
    hidden_sizes: list of ints.
    event_size: int D.
    bias_init: optional initial logit bias `[D]`; FIVO sets it to the logit
      of the training mean (see `logit`).
  """

  def __init__(self, input_size, hidden_sizes, event_size, seed=0,
               bias_init=None, dtype=tf.float32, name=None):
    super().__init__(name=name)
    self.event_size = event_size
    self.net = nets.MLP(input_size, hidden_sizes, event_size, seed=seed,
                        output_bias_init=bias_init, dtype=dtype, name="net")

  def __call__(self, *inputs):
    logits = self.net(tf.concat(inputs, axis=-1))
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=logits.dtype),
                           reinterpreted_batch_ndims=1)

  def flops_per_row(self):
    return self.net.flops_per_row()
