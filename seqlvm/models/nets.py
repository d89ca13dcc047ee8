"""Small networks as `tf.Module`s: affine maps, MLPs and an LSTM cell.

They create their variables eagerly in the constructor (no lazy build), so a
model is complete before any `tf.function` traces it and a checkpoint restores
into it directly. Weights use Glorot-uniform initialisation and zero biases,
as the FIVO reference code does.
"""

import math

import tensorflow as tf

__all__ = ["Linear", "MLP", "LSTMCell", "glorot_uniform"]


def glorot_uniform(shape, seed, dtype=tf.float32):
  fan_in, fan_out = shape[0], shape[-1]
  limit = math.sqrt(6. / (fan_in + fan_out))
  return tf.random.stateless_uniform(shape, seed, -limit, limit, dtype=dtype)


class Linear(tf.Module):
  """y = x W + b.

  Args:
    input_size: int.
    output_size: int.
    seed: int, for the initial weights.
    bias_init: optional float or array `[output_size]` for the initial bias.
  """

  def __init__(self, input_size, output_size, seed=0, bias_init=None,
               dtype=tf.float32, name=None):
    super().__init__(name=name)
    self.input_size = input_size
    self.output_size = output_size
    self.w = tf.Variable(
        glorot_uniform([input_size, output_size], (seed, 17), dtype), name="w")
    b = tf.zeros([output_size], dtype) if bias_init is None else tf.cast(
        tf.broadcast_to(bias_init, [output_size]), dtype)
    self.b = tf.Variable(b, name="b")

  def __call__(self, x, offset=None, start=0):
    """x W[start:start + d] + b (+ offset), for x `[R, d]`.

    With `start` and `offset` a layer can take part of its input
    precomputed: `offset` is `project` of the other rows' inputs.
    """
    if start == 0 and x.shape[-1] == self.input_size:
      y = tf.matmul(x, self.w) + self.b
    else:
      y = tf.matmul(x, self.w[start:start + x.shape[-1]]) + self.b
    return y if offset is None else y + offset

  def project(self, x, start=0):
    """x W[start:start + d] without the bias: a precomputable part."""
    return tf.matmul(x, self.w[start:start + x.shape[-1]])

  def flops_per_row(self):
    return 2 * self.input_size * self.output_size


class MLP(tf.Module):
  """Hidden layers with ReLU, then a linear output layer.

  Args:
    input_size: int.
    hidden_sizes: list of ints (possibly empty).
    output_size: int.
    seed: int.
    output_bias_init: optional initial bias of the output layer.
  """

  def __init__(self, input_size, hidden_sizes, output_size, seed=0,
               output_bias_init=None, dtype=tf.float32, name=None):
    super().__init__(name=name)
    sizes = [input_size] + list(hidden_sizes)
    self.layers = [
        Linear(a, b, seed=seed * 101 + i, dtype=dtype, name=f"hidden_{i}")
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    ]
    self.out = Linear(sizes[-1], output_size, seed=seed * 101 + 99,
                      bias_init=output_bias_init, dtype=dtype, name="out")

  def __call__(self, x, offset=None, start=0):
    """Applies the MLP; `offset` and `start` go to the first layer."""
    layers = self.layers + [self.out]
    for i, layer in enumerate(layers):
      x = layer(x, offset, start) if i == 0 else layer(x)
      if i < len(self.layers):
        x = tf.nn.relu(x)
    return x

  def flops_per_row(self):
    return sum(l.flops_per_row() for l in self.layers) + self.out.flops_per_row()


class LSTMCell(tf.Module):
  """A standard LSTM cell (forget-gate bias 1), one fused matmul per step.

  State is the pair (h, c), each `[R, hidden_size]`.
  """

  def __init__(self, input_size, hidden_size, seed=0, dtype=tf.float32,
               name=None):
    super().__init__(name=name)
    self.input_size = input_size
    self.hidden_size = hidden_size
    bias = tf.concat([tf.zeros([hidden_size]), tf.ones([hidden_size]),
                      tf.zeros([2 * hidden_size])], axis=0)
    self.kernel = Linear(input_size + hidden_size, 4 * hidden_size, seed=seed,
                         bias_init=bias, dtype=dtype, name="kernel")

  def initial_state(self, batch_size, dtype=tf.float32):
    zeros = tf.zeros([batch_size, self.hidden_size], dtype)
    return zeros, zeros

  def __call__(self, inputs, state, projected=None, start=0):
    """One step. `projected` is `kernel.project` of the first `start` input
    columns, computed ahead (for inputs shared by many rows)."""
    h, c = state
    gates = self.kernel(tf.concat([inputs, h], axis=-1), offset=projected,
                        start=start)
    i, f, g, o = tf.split(gates, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, (h, c)

  def flops_per_row(self):
    return self.kernel.flops_per_row()

