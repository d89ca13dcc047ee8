"""Small networks as `tf.Module`s: affine maps with named input blocks, MLPs
and an LSTM cell.

They create their variables eagerly in the constructor (no lazy build), so a
model is complete before any `tf.function` traces it and a checkpoint restores
into it directly. Weights use Glorot-uniform initialisation and zero biases,
as the FIVO reference code does.

Named input blocks. A layer that reads several inputs declares them, in the
order of its weight rows: `Linear([("h", 64), ("x", 64)], 32)`. Callers pass
inputs by name, `layer(h=h, x=x)`; the layer concatenates them in its own
order, so no call can put a column in the wrong place. Part of the input can
be multiplied ahead, once per batch and outside the particle loop:

    precomputed = layer.project(x=features_of_x)   # [T*B, out], no bias
    y = layer(h=h, precomputed=precomputed_t)      # + h W_h + b, per particle

The blocks given to one call must be adjacent in the declared order (they
are one slice of the weight rows). The weights are one kernel `w` and one
bias `b` whatever the blocks, so checkpoints do not depend on them.

Mixed precision. The products may be computed in bfloat16 or float16 while
the weights, the bias, every activation and so every log density and log
weight stay float32: the layer casts its input and kernel to the matmul
dtype and the product back (the gradients reach the float32 variables
through the casts). A layer takes its matmul dtype when it is built, from
`matmul_precision`, so a model built inside

    with nets.matmul_precision("bfloat16"):
      model = VRNN(88)

runs every dense product of every network in bfloat16, and its checkpoints
are those of the float32 model. float16 products need loss scaling to be
trained (small gradients underflow in float16); seqlvm's training offers
bfloat16 only.

Both module settings (`matmul_precision`, `product_hook`) are process-wide,
read while a model is built or a function traced: not for threads that
build or trace at the same time.
"""

import collections
import contextlib
import math

import tensorflow as tf

__all__ = ["Linear", "MLP", "LSTMCell", "glorot_uniform", "PRECISIONS",
           "matmul_precision", "product_hook"]

_INPUTS = "inputs"  # The name of the single block of an unnamed input.

# The matmul dtypes `matmul_precision` accepts; "float32" means the weights'
# own dtype (no casts).
PRECISIONS = ("float32", "bfloat16", "float16")
_PRECISION = ["float32"]  # The matmul dtype of the layers built now.


_HOOK = [None]  # The active `product_hook`, if any.


@contextlib.contextmanager
def product_hook(hook):
  """While active, each `Linear` product x W[rows] (x `[R, rows]`) is
  `hook(layer, start, stop, x, matmul)`: W's rows start:stop, and
  `matmul(x, w)` the layer's own product (its precision). The SMC sweep
  uses it to take the weight gradients of its step's products out of the
  loop over time (`seqlvm.smc.filter`)."""
  saved = _HOOK[0]
  _HOOK[0] = hook
  try:
    yield
  finally:
    _HOOK[0] = saved


@contextlib.contextmanager
def matmul_precision(precision):
  """Layers built inside compute their products in `precision`, one of
  `PRECISIONS` (the weights and everything else stay in their dtype)."""
  if precision not in PRECISIONS:
    raise ValueError(f"precision must be one of {PRECISIONS}, got "
                     f"{precision!r}.")
  saved = _PRECISION[0]
  _PRECISION[0] = precision
  try:
    yield
  finally:
    _PRECISION[0] = saved


def glorot_uniform(shape, seed, dtype=tf.float32):
  fan_in, fan_out = shape[0], shape[-1]
  limit = math.sqrt(6. / (fan_in + fan_out))
  return tf.random.stateless_uniform(shape, seed, -limit, limit, dtype=dtype)


def _blocks(input_size):
  """OrderedDict name -> (first row, size) from an int or (name, size)s."""
  if isinstance(input_size, int):
    return collections.OrderedDict([(_INPUTS, (0, input_size))])
  blocks, start = collections.OrderedDict(), 0
  for name, size in input_size:
    if name in blocks:
      raise ValueError(f"Input block {name!r} is declared twice.")
    blocks[name] = (start, int(size))
    start += int(size)
  return blocks


class Linear(tf.Module):
  """y = x W + b, with the rows of W in named input blocks.

  Args:
    input_size: int, or a sequence of (name, size): the input blocks, in the
      order of W's rows.
    output_size: int.
    seed: int, for the initial weights.
    bias_init: optional float or array `[output_size]` for the initial bias.
  """

  def __init__(self, input_size, output_size, seed=0, bias_init=None,
               dtype=tf.float32, name=None):
    super().__init__(name=name)
    self.blocks = _blocks(input_size)
    self.input_size = sum(size for _, size in self.blocks.values())
    self.output_size = output_size
    self.w = tf.Variable(
        glorot_uniform([self.input_size, output_size], (seed, 17), dtype),
        name="w")
    b = tf.zeros([output_size], dtype) if bias_init is None else tf.cast(
        tf.broadcast_to(bias_init, [output_size]), dtype)
    self.b = tf.Variable(b, name="b")
    # None: the weights' dtype. A Python attribute, fixed when built: a
    # traced function sees the same products at every call.
    self.matmul_dtype = (None if _PRECISION[0] == "float32" else
                         tf.as_dtype(_PRECISION[0]))

  def _matmul(self, x, w):
    """x w, in `matmul_dtype` when set (cast back to w's dtype)."""
    if self.matmul_dtype is None or self.matmul_dtype == w.dtype:
      return tf.matmul(x, w)
    product = tf.matmul(tf.cast(x, self.matmul_dtype),
                        tf.cast(w, self.matmul_dtype))
    return tf.cast(product, w.dtype)

  def weights(self, start, stop):
    """W's rows start:stop `[stop - start, out]`."""
    if start == 0 and stop == self.input_size:
      return self.w
    return self.w[start:stop]

  def _product(self, x, start, stop):
    """x W[start:stop], through the active `product_hook` if any."""
    if _HOOK[0] is not None:
      return _HOOK[0](self, start, stop, x, self._matmul)
    return self._matmul(x, self.weights(start, stop))

  def _stacked(self, inputs):
    """The named inputs concatenated in block order, and their rows."""
    unknown = sorted(set(inputs) - set(self.blocks))
    if unknown or not inputs:
      raise ValueError(f"{self.name}: unknown input block(s) {unknown} or "
                       f"none given; its blocks are {list(self.blocks)}.")
    names = [n for n in self.blocks if n in inputs]
    start = self.blocks[names[0]][0]
    stop = start
    for name in names:
      first, size = self.blocks[name]
      width = inputs[name].shape[-1]
      if first != stop:
        raise ValueError(f"{self.name}: input blocks {names} are not adjacent "
                         f"in {list(self.blocks)}.")
      if width is not None and width != size:
        raise ValueError(f"{self.name}: input block {name!r} has {width} "
                         f"columns, expected {size}.")
      stop = first + size
    values = [inputs[n] for n in names]
    x = values[0] if len(values) == 1 else tf.concat(values, axis=-1)
    return x, start, stop

  def project(self, **inputs):
    """The named inputs' part of x W, without the bias: `[R, out]`."""
    x, start, stop = self._stacked(inputs)
    return self._product(x, start, stop)

  def __call__(self, *whole, precomputed=None, **inputs):
    """x W + b (+ precomputed).

    Args:
      *whole: optionally x `[R, input_size]`, the whole input.
      precomputed: optional `[R, out]`, `project` of the blocks not given.
      **inputs: named blocks `[R, size]`, instead of the whole input.
    """
    if whole:
      (x,) = whole
      if inputs or x.shape[-1] != self.input_size:
        raise ValueError(f"{self.name}: a positional input must be the whole "
                         f"input ({self.input_size} columns); pass blocks "
                         f"{list(self.blocks)} by name.")
      y = self._product(x, 0, self.input_size) + self.b
    else:
      x, start, stop = self._stacked(inputs)
      y = self._product(x, start, stop) + self.b
    return y if precomputed is None else y + precomputed


class MLP(tf.Module):
  """Hidden layers with ReLU, then a linear output layer.

  Args:
    input_size: int, or (name, size) blocks of the first layer.
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

  @property
  def first(self):
    """The layer that reads the input (and owns its blocks)."""
    return (self.layers + [self.out])[0]

  def project(self, **inputs):
    """The first layer's part of the named inputs (see `Linear.project`)."""
    return self.first.project(**inputs)

  def __call__(self, *whole, precomputed=None, **inputs):
    """Applies the MLP; the whole input or the named blocks, and
    `precomputed`, go to the first layer."""
    layers = self.layers + [self.out]
    x = None
    for i, layer in enumerate(layers):
      x = (layer(*whole, precomputed=precomputed, **inputs) if i == 0 else
           layer(x))
      if i < len(self.layers):
        x = tf.nn.relu(x)
    return x


class LSTMCell(tf.Module):
  """A standard LSTM cell (forget-gate bias 1), one fused matmul per step.

  State is the pair (h, c), each `[R, hidden_size]`. The kernel's blocks are
  the input's, then "h" (the recurrent input).

  Args:
    input_size: int, or (name, size) blocks of the input.
    hidden_size: int.
  """

  def __init__(self, input_size, hidden_size, seed=0, dtype=tf.float32,
               name=None):
    super().__init__(name=name)
    blocks = list(_blocks(input_size).items())
    self.input_size = sum(size for _, (_, size) in blocks)
    self.hidden_size = hidden_size
    bias = tf.concat([tf.zeros([hidden_size]), tf.ones([hidden_size]),
                      tf.zeros([2 * hidden_size])], axis=0)
    self.kernel = Linear(
        [(n, size) for n, (_, size) in blocks] + [("h", hidden_size)],
        4 * hidden_size, seed=seed, bias_init=bias, dtype=dtype,
        name="kernel")

  def initial_state(self, batch_size, dtype=tf.float32):
    zeros = tf.zeros([batch_size, self.hidden_size], dtype)
    return zeros, zeros

  def __call__(self, state, precomputed=None, **inputs):
    """One step on the named input blocks (those not in `precomputed`,
    which is `kernel.project` of the others, computed ahead)."""
    h, c = state
    gates = self.kernel(precomputed=precomputed, h=h, **inputs)
    i, f, g, o = tf.split(gates, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, (h, c)
