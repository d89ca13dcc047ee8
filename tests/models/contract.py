"""Checks every sequence model must pass (the model contract, DESIGN.md 4).

Each model's test module calls these with a factory
`make(emission) -> model` built with deliberately distinct sizes.
"""

import numpy as np
import tensorflow as tf

from seqlvm import bounds
from seqlvm import shapes

T, B, N, D = 7, 2, 3, 5
LENGTHS = (7, 4)
BOUNDS = ("elbo", "iwae", "fivo")


def data(emission, seed=0, num_steps=T, lengths=LENGTHS):
  """x `[T, B, D]` (binary or real) with zeros past each length, and mask."""
  rng = np.random.RandomState(seed)
  if emission == "bernoulli":
    x = (rng.rand(num_steps, B, D) < 0.3).astype(np.float32)
  else:
    x = rng.randn(num_steps, B, D).astype(np.float32)
  mask = shapes.sequence_mask(lengths, num_steps)
  return tf.constant(x * mask.numpy()[..., None]), mask


def _bound(name, model, x, mask, seed=(1, 2), num_particles=N,
           compiled=False):
  # Eager: at T = 7 tracing a graph per bound costs more than running it.
  # check_seeds checks that the compiled bound gives the same numbers.
  kwargs = dict(resampling="always") if name == "fivo" else {}
  return getattr(bounds, name)(model, x, mask, num_particles=num_particles,
                               seed=seed, compiled=compiled, **kwargs)


def check_step_shapes(model, emission):
  """One step by hand: every StepOutput field is `[N*B]`; states keep their
  shapes; each bound gives `[B]`."""
  x, mask = data(emission)
  context = model.prepare(x, mask)
  for c in tf.nest.flatten(context):
    assert c.shape[:2] == (T, B), c.shape
  state = model.initial_state(N * B)
  context_t = tf.nest.map_structure(
      lambda c: shapes.tile_particles(c[0], N), context)
  out = model.step(state, context_t, shapes.tile_particles(x[0], N), (1, 2))
  tf.nest.assert_same_structure(state, out.state)
  for before, after in zip(tf.nest.flatten(state), tf.nest.flatten(out.state)):
    assert before.shape == after.shape and after.shape[0] == N * B
  for value in (out.log_p_z, out.log_p_x_given_z, out.log_q_z):
    assert value.shape == (N * B,), value.shape
    assert np.all(np.isfinite(value.numpy()))
  for name in BOUNDS:
    assert _bound(name, model, x, mask).shape == (B,)


def check_padding_is_ignored(model, emission):
  """Extra masked steps (holding garbage) change no bound."""
  x, mask = data(emission)
  longer, longer_mask = data(emission, seed=9, num_steps=T + 5)
  padded = tf.concat([x, longer[T:] + 3.], axis=0)
  padded_mask = tf.concat([mask, tf.zeros([5, B], tf.bool)], axis=0)
  del longer_mask
  for name in BOUNDS:
    np.testing.assert_allclose(
        _bound(name, model, padded, padded_mask).numpy(),
        _bound(name, model, x, mask).numpy(), rtol=1e-5, atol=1e-4)


def check_gradients(model, emission):
  """Every trainable variable gets a finite gradient from every bound, and
  together they are not all zero."""
  x, mask = data(emission)
  variables = model.trainable_variables
  assert variables
  for name in BOUNDS:
    with tf.GradientTape() as tape:
      loss = -tf.reduce_sum(_bound(name, model, x, mask))
    grads = tape.gradient(loss, variables)
    missing = [v.name for v, g in zip(variables, grads) if g is None]
    assert not missing, (name, missing)
    for v, g in zip(variables, grads):
      g = tf.convert_to_tensor(g)
      assert np.all(np.isfinite(g.numpy())), (name, v.name)
    assert sum(float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g))))
               for g in grads) > 0


def check_seeds(model, emission):
  """The same seed gives the same bound, eager or compiled, and the same
  sample; another seed another sample."""
  x, mask = data(emission)
  for name in BOUNDS:
    np.testing.assert_array_equal(_bound(name, model, x, mask, seed=(3, 4)),
                                  _bound(name, model, x, mask, seed=(3, 4)))
  # Equal to float32 rounding (the graph may fuse ops the eager run does
  # not); the same draws, resampling included.
  np.testing.assert_allclose(
      _bound("fivo", model, x, mask, seed=(3, 4), compiled=True),
      _bound("fivo", model, x, mask, seed=(3, 4)), rtol=1e-6)
  a = model.sample(6, 3, seed=(5, 6))
  assert a.shape == (6, 3, D)
  np.testing.assert_array_equal(a, model.sample(6, 3, seed=(5, 6)))
  assert not np.array_equal(a, model.sample(6, 3, seed=(5, 7)))
  x_s, means = model.sample(6, 3, seed=(5, 6), return_means=True)
  np.testing.assert_array_equal(x_s, a)
  assert means.shape == (6, 3, D)
  if emission == "bernoulli":
    assert set(np.unique(a.numpy())) <= {0., 1.}
    assert np.all((means.numpy() >= 0) & (means.numpy() <= 1))


def check_all(make):
  """Runs every check for both emissions."""
  for emission in ("bernoulli", "gaussian"):
    model = make(emission)
    check_step_shapes(model, emission)
    check_padding_is_ignored(model, emission)
    check_gradients(model, emission)
    check_seeds(model, emission)
