"""Conditional distribution heads: inputs `[R, ...]` -> a TFP distribution.

Each head returns a distribution with `batch_shape [R]` and `event_shape [D]`
(`tfd.Independent`), so `log_prob` gives one number per row (per particle).
A head's input may be named blocks (see `seqlvm.models.nets`): pass them by
name, and a part computed ahead as `precomputed` (from `head.project`).
`emission` builds the emission head every model uses.

Recommended import: `from seqlvm.models import heads`.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.models import nets

tfd = tfp.distributions

__all__ = ["ConditionalNormal", "ConditionalBernoulli", "ConditionalLogits",
           "emission", "logit"]


def logit(p, eps=1e-4):
  """logit(clip(p)), the FIVO initial emission bias for a Bernoulli mean p."""
  p = np.clip(np.asarray(p, np.float64), eps, 1. - eps)
  return np.log(p) - np.log1p(-p)


class _Head(tf.Module):
  """An MLP over (possibly named) inputs."""

  def _net_output(self, inputs, precomputed, named):
    if inputs:
      x = inputs[0] if len(inputs) == 1 else tf.concat(inputs, axis=-1)
      return self.net(x, precomputed=precomputed)
    return self.net(precomputed=precomputed, **named)

  def project(self, **inputs):
    """The first layer's part of the named inputs, computed ahead."""
    return self.net.project(**inputs)


class ConditionalNormal(_Head):
  """A diagonal Gaussian whose mean and scale an MLP computes from its inputs.

  scale = max(softplus(raw + raw_scale_bias), min_scale), as in FIVO's
  `ConditionalNormalDistribution`.

  Args:
    input_size: int, or (name, size) input blocks.
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

  def params(self, *inputs, precomputed=None, **named):
    """Mean and scale, each `[R, D]`, from the whole input (positional, in
    order) or named blocks."""
    out = self._net_output(inputs, precomputed, named)
    loc, raw_scale = tf.split(out, 2, axis=-1)
    scale = tf.maximum(tf.nn.softplus(raw_scale + self.raw_scale_bias),
                       self.min_scale)
    return loc, scale

  def __call__(self, *inputs, loc_offset=None, precomputed=None, **named):
    loc, scale = self.params(*inputs, precomputed=precomputed, **named)
    if loc_offset is not None:
      loc = loc + loc_offset
    return tfd.Independent(tfd.Normal(loc, scale), reinterpreted_batch_ndims=1)


class ConditionalLogits(_Head):
  """Unnormalised log-probabilities `[R, K]` of a categorical, from an MLP.

  The model builds the distribution over them (a Concrete relaxation when
  training, the categorical itself when evaluating).

  Args:
    input_size: int, or (name, size) input blocks.
    hidden_sizes: list of ints.
    num_classes: int K.
  """

  def __init__(self, input_size, hidden_sizes, num_classes, seed=0,
               dtype=tf.float32, name=None):
    super().__init__(name=name)
    self.event_size = num_classes
    self.net = nets.MLP(input_size, hidden_sizes, num_classes, seed=seed,
                        dtype=dtype, name="net")

  def __call__(self, *inputs, precomputed=None, **named):
    return self._net_output(inputs, precomputed, named)


class ConditionalBernoulli(_Head):
  """Independent Bernoullis whose logits an MLP computes from its inputs.

  Args:
    input_size: int, or (name, size) input blocks.
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

  def logits(self, *inputs, precomputed=None, **named):
    return self._net_output(inputs, precomputed, named)

  def __call__(self, *inputs, precomputed=None, **named):
    logits = self.logits(*inputs, precomputed=precomputed, **named)
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=logits.dtype),
                           reinterpreted_batch_ndims=1)


def emission(kind, input_size, hidden_sizes, data_size, data_mean, mean,
             seed, dtype, name="emission"):
  """The emission head p(x_t | ...) of kind "bernoulli" or "gaussian".

  Its bias starts at logit(mean) for Bernoulli emissions and at the mean for
  Gaussian ones (FIVO's initialisation); with no `data_mean` a Bernoulli
  bias starts at zero.

  Args:
    kind: "bernoulli" or "gaussian".
    input_size: int, or (name, size) input blocks.
    hidden_sizes: list of ints.
    data_size: int D.
    data_mean: the training mean as given (None: no centring).
    mean: float64 `[D]`, the checked mean (`base.checked_mean`).
    seed: int.
    dtype: the float dtype.

  Returns:
    head: a `ConditionalBernoulli` or `ConditionalNormal`.
  """
  if kind == "bernoulli":
    return ConditionalBernoulli(
        input_size, hidden_sizes, data_size, seed=seed,
        bias_init=None if data_mean is None else logit(mean), dtype=dtype,
        name=name)
  return ConditionalNormal(input_size, hidden_sizes, data_size, seed=seed,
                           loc_bias_init=mean, dtype=dtype, name=name)
