"""Layers with named input blocks: the order is the layer's, not the call's."""

import numpy as np
import pytest
import tensorflow as tf

from seqlvm.models import heads
from seqlvm.models import nets

H, X, Z, R = 4, 3, 2, 5


def _inputs(seed=0):
  rng = np.random.RandomState(seed)
  return {name: tf.constant(rng.randn(R, size), tf.float32)
          for name, size in (("h", H), ("x", X), ("z", Z))}


def test_named_blocks_are_the_whole_input_in_declared_order():
  layer = nets.Linear([("h", H), ("x", X), ("z", Z)], 6, seed=1)
  v = _inputs()
  whole = layer(tf.concat([v["h"], v["x"], v["z"]], axis=-1))
  # Keyword order does not matter: the layer concatenates in its own order.
  np.testing.assert_array_equal(layer(z=v["z"], h=v["h"], x=v["x"]), whole)
  np.testing.assert_array_equal(layer(h=v["h"], x=v["x"], z=v["z"]), whole)


def test_a_block_computed_ahead_plus_the_rest_is_the_whole():
  layer = nets.Linear([("x", X), ("h", H), ("z", Z)], 6, seed=2)
  v = _inputs(1)
  whole = layer(x=v["x"], h=v["h"], z=v["z"])
  ahead = layer.project(x=v["x"])
  np.testing.assert_allclose(layer(h=v["h"], z=v["z"], precomputed=ahead),
                             whole, rtol=1e-6, atol=1e-6)
  mlp = nets.MLP([("x", X), ("h", H)], [7], 3, seed=3)
  np.testing.assert_allclose(
      mlp(h=v["h"], precomputed=mlp.project(x=v["x"])),
      mlp(x=v["x"], h=v["h"]), rtol=1e-6, atol=1e-6)


def test_wrong_blocks_are_refused_with_the_layers_blocks_named():
  layer = nets.Linear([("h", H), ("x", X), ("z", Z)], 6, name="gate")
  v = _inputs()
  with pytest.raises(ValueError, match=r"unknown input block\(s\) \['y'\]"):
    layer(y=v["x"])
  with pytest.raises(ValueError, match="not adjacent"):
    layer(h=v["h"], z=v["z"])
  with pytest.raises(ValueError, match="'x' has 4 columns, expected 3"):
    layer(x=v["h"])
  with pytest.raises(ValueError, match="pass blocks"):
    layer(v["h"])  # a positional input must be the whole input


def test_lstm_cell_reads_its_inputs_and_its_state():
  cell = nets.LSTMCell([("x", X), ("z", Z)], H, seed=4)
  assert list(cell.kernel.blocks) == ["x", "z", "h"]
  v = _inputs(2)
  state = cell.initial_state(R)
  out, (h, c) = cell(state, x=v["x"], z=v["z"])
  ahead = cell.kernel.project(x=v["x"])
  out2, _ = cell(state, precomputed=ahead, z=v["z"])
  np.testing.assert_allclose(out, out2, rtol=1e-6, atol=1e-6)
  assert out.shape == h.shape == c.shape == (R, H)


def test_emission_factory_initialises_the_bias_from_the_mean():
  mean = np.array([0.1, 0.5, 0.9])
  bernoulli = heads.emission("bernoulli", [("h", H)], [], 3, mean, mean,
                             seed=0, dtype=tf.float32)
  np.testing.assert_allclose(bernoulli.net.out.b, heads.logit(mean),
                             rtol=1e-6)
  gaussian = heads.emission("gaussian", H, [H], 3, mean, mean, seed=0,
                            dtype=tf.float32)
  np.testing.assert_allclose(gaussian.net.out.b[:3], mean, rtol=1e-6)
  dist = gaussian(tf.zeros([R, H]))
  assert dist.batch_shape == (R,) and dist.event_shape == (3,)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_layer_keeps_float32_weights_and_outputs(precision):
  """Built under `matmul_precision`, a layer has the float32 layer's weights
  and gives its output to the low dtype's rounding, in float32, with
  float32 gradients."""
  inputs = _inputs()
  exact = nets.Linear([("h", H), ("x", X), ("z", Z)], 6, seed=1)
  with nets.matmul_precision(precision):
    mixed = nets.Linear([("h", H), ("x", X), ("z", Z)], 6, seed=1)
  assert [v.dtype for v in mixed.trainable_variables] == [tf.float32] * 2
  for u, v in zip(exact.trainable_variables, mixed.trainable_variables):
    np.testing.assert_array_equal(u, v)
  with tf.GradientTape(persistent=True) as tape:
    y_exact, y_mixed = exact(**inputs), mixed(**inputs)
    loss_exact = tf.reduce_sum(tf.square(y_exact))
    loss_mixed = tf.reduce_sum(tf.square(y_mixed))
  assert y_mixed.dtype == tf.float32
  # bfloat16 keeps 8 bits of mantissa (relative rounding 2**-8 = 4e-3 per
  # operand), float16 11 (5e-4).
  rtol = 2e-2 if precision == "bfloat16" else 3e-3
  assert not np.array_equal(y_mixed, y_exact)  # the products are rounded
  np.testing.assert_allclose(y_mixed, y_exact, rtol=rtol,
                             atol=rtol * np.abs(y_exact).max())
  for g_exact, g_mixed in zip(tape.gradient(loss_exact, exact.w),
                              tape.gradient(loss_mixed, mixed.w)):
    assert g_mixed.dtype == tf.float32
    np.testing.assert_allclose(g_mixed, g_exact, rtol=rtol,
                               atol=rtol * np.abs(g_exact).max())
  with pytest.raises(ValueError, match="precision must be one of"):
    with nets.matmul_precision("int8"):
      pass
  # The setting ends with the block.
  assert nets.Linear(2, 3).matmul_dtype is None
