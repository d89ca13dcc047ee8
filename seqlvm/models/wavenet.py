"""WaveNet-style causal decoders: an autoregressive model and a VRNN with one.

The stack (van den Oord et al. 2016), time-major `[T, B, C]` in and out:

    u_t     = x_{t-1}  (zeros at t = 0)       the one-step shift: causality
    h^0_t   = [u_{t-1}, u_t] W_in + b          causal input layer, kernel 2
    for block l = 0 .. L-1, dilation d_l (e.g. 1, 2, 4, 8, 1, 2, 4, 8):
      f, g      = split([h^l_{t-d_l}, h^l_t] W_l + b_l)  dilated causal conv
      a_t       = tanh(f) * sigmoid(g)                     gated activation
      skip^l_t  = a_t S_l + s_l                            1x1 skip
      h^{l+1}_t = h^l_t + a_t R_l + r_l                    1x1 residual
    feature_t = relu(relu(sum_l skip^l_t) W_out + b_out)

Inputs before the start are zeros at every layer (causal zero padding). So
feature_t summarises x_{t-R} .. x_{t-1}, with R = `receptive_field` = 2 +
sum(dilations): never x_t or later.

A kernel-2 dilated causal convolution is one matmul of `[h_{t-d}, h_t]`, so
the full-sequence pass shifts the flattened `[T*B, C]` rows by d*B rows (a
zero pad) and multiplies once per layer, and the single-step pass multiplies
the same weights on `[B, 2C]` rows. Generation (Paine et al. 2016) keeps, per
layer, the last d inputs in a circular buffer (a `tf.TensorArray` of d
elements `[B, C]`): the slot `t mod d` holds h_{t-d}, which step t reads and
then overwrites with h_t. A read and a write cost O(1) whatever d (a
`tensor_scatter_nd_update` into one packed `[sum(d), B, C]` tensor would copy
it every step outside XLA), so generating T steps costs O(T x layers),
against O(T^2 x layers) for recomputing the stack over the prefix at every
step (`method="naive"` in `sample`, the baseline).

The models and the contract (DESIGN.md section 4):

- `WaveNet`: p(x) = prod_t p(x_t | x_{<t}), no latent variables. `prepare`
  runs the stack and the emission head once per batch and returns the
  emission parameters for every step; `step` only evaluates log p(x_t |
  x_{<t}) with log p(z) = log q(z) = 0 and an empty state `[N*B, 0]`. Every
  particle then carries the same weight, so ELBO, IWAE and FIVO (any N,
  with or without resampling) all equal the exact log-likelihood, which
  `log_likelihood` computes directly.
- `VRNNWaveNet`: the VRNN of `seqlvm.models.vrnn` whose emission also reads
  the stack's feature, p(x_t | h_t, phi_z(z_t), feature_t). The feature is
  the same for every particle, so `prepare` runs the stack once per batch
  and appends its projection by the emission's first layer to the VRNN's
  context; each step adds it to the particle's own part.

Departures from the paper:

- No mu-law companding and 256-way softmax: the observations are frames
  x_t in R^D (pianoroll frames, 200-sample speech frames), with Bernoulli
  (bias initialised at logit(mean)) or diagonal Gaussian emissions, whose
  linear head plays the part of WaveNet's last 1x1 layer.
- Kernel size 2 in every layer, the input layer included; skip and
  residual widths both equal `channels`; the last block has no residual
  1x1 (its output would feed nothing); no global or local conditioning
  (in `VRNNWaveNet` the emission conditions on the VRNN's h_t and z_t).
- Time-major shifted matmuls rather than an NWC `conv1d` (STYLE.md 2), so
  that the full and the incremental pass share one code path and agree to
  rounding.

Recommended import: `from seqlvm.models import WaveNet, VRNNWaveNet`.

#### References
[1] van den Oord, Dieleman, Zen, Simonyan, Vinyals, Graves, Kalchbrenner,
    Senior, Kavukcuoglu. WaveNet: A Generative Model for Raw Audio. 2016.
    https://arxiv.org/abs/1609.03499
[2] Paine, Khorrami, Chang, Zhang, Ramachandran, Hasegawa-Johnson, Huang.
    Fast Wavenet Generation Algorithm. 2016. https://arxiv.org/abs/1611.09482
[3] Chung et al. A Recurrent Latent Variable Model for Sequential Data.
    NeurIPS 2015. https://arxiv.org/abs/1506.02216
"""

import collections

import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.models import base
from seqlvm.models import heads
from seqlvm.models import nets
from seqlvm.models import vrnn

tfd = tfp.distributions

__all__ = ["WaveNetStack", "WaveNet", "VRNNWaveNet", "QueueCache",
           "PrefixCache", "VRNNWaveNetContext", "SAMPLING_METHODS"]

VRNNWaveNetContext = collections.namedtuple(
    "VRNNWaveNetContext",
    [
        "lstm_inputs",  # [T, B, 4H], as VRNNContext.
        "proposal_inputs",  # [T, B, H], as VRNNContext.
        "emission_inputs",  # [T, B, H]: the emission's product of the
                            # stack's feature of x_{<t}.
    ])
SAMPLING_METHODS = ("cached", "naive")

QueueCache = collections.namedtuple(
    "QueueCache",
    [
        "step",  # int32 scalar t: the step the next call computes.
        "inputs",  # [B, D]: u_{t-1} = x_{t-2}, the input layer's past.
        "queues",  # tuple of L TensorArrays, block l's of size d_l with
                   # elements [B, C]: its last d_l inputs, circularly.
    ])

PrefixCache = collections.namedtuple(
    "PrefixCache",
    [
        "step",  # int32 scalar t.
        "history",  # [T_max, B, D]: u_0 .. u_{t-1} so far, zeros after.
    ])


def _check_sampling_method(method):
  if method not in SAMPLING_METHODS:
    raise ValueError(f"Unknown sampling method {method!r}; choose one of "
                     f"{', '.join(SAMPLING_METHODS)}.")


def _shift(rows, num_steps, batch_size):
  """Delays flattened time-major rows `[T*B, C]` by `num_steps` steps, with
  zeros before the start (row t*B + b is step t of sequence b)."""
  return tf.pad(rows, [[num_steps * batch_size, 0], [0, 0]])[:tf.shape(
      rows)[0]]


class WaveNetStack(tf.Module):
  """Gated residual blocks of dilated causal convolutions (kernel size 2).

  `stack(x)[t]` depends on x_{t-R} .. x_{t-1} only (R = `receptive_field`).

  Args:
    input_size: int D, the size of one input frame.
    channels: int C, the residual, skip and output width. Default value: 32.
    dilations: the dilations of one stack of blocks. Default value:
      (1, 2, 4, 8, 16).
    num_stacks: how many times the dilations repeat. Default value: 1.
    seed: int, for the initial weights. Default value: 0.

  #### Examples

  ```python
  stack = WaveNetStack(88, channels=32, dilations=(1, 2, 4, 8), num_stacks=2)
  features = stack(x)  # [T, B, 32]; features[t] sees x[:t] only.
  cache = stack.initial_cache(batch_size=4)
  feature_0, cache = stack.step(tf.zeros([4, 88]), cache)  # == features[0]
  feature_1, cache = stack.step(x[0], cache)                # == features[1]
  ```
  """

  def __init__(self, input_size, channels=32, dilations=(1, 2, 4, 8, 16),
               num_stacks=1, seed=0, dtype=tf.float32, name=None):
    super().__init__(name=name)
    for label, value in (("input_size", input_size), ("channels", channels),
                         ("num_stacks", num_stacks)):
      if int(value) < 1:
        raise ValueError(f"{label} must be a positive integer, got {value}.")
    dilations = tuple(int(d) for d in dilations)
    if not dilations or min(dilations) < 1:
      raise ValueError(f"dilations must be a non-empty list of positive "
                       f"integers, got {dilations}.")
    self.input_size = input_size
    self.channels = channels
    self.dilations = dilations * num_stacks
    self.num_layers = len(self.dilations)
    self.receptive_field = 2 + sum(self.dilations)
    self.dtype = dtype
    c = channels
    with self.name_scope:
      self.input_layer = nets.Linear(2 * input_size, c, seed=seed * 1009,
                                     dtype=dtype, name="input")
      # Filter and gate fused: [h_{t-d}, h_t] -> [f, g].
      self.gates = [
          nets.Linear(2 * c, 2 * c, seed=seed * 1009 + 1 + 2 * i, dtype=dtype,
                      name=f"gate_{i}") for i in range(self.num_layers)]
      # Residual and skip 1x1s fused: a -> [residual, skip]; the last block
      # has the skip only.
      self.outputs = [
          nets.Linear(c, c if i == self.num_layers - 1 else 2 * c,
                      seed=seed * 1009 + 2 + 2 * i, dtype=dtype,
                      name=f"out_{i}") for i in range(self.num_layers)]
      self.output_layer = nets.Linear(c, c, seed=seed * 1009 + 1000,
                                      dtype=dtype, name="output")

  def _block(self, i, previous, current):
    """Block i on rows `[R, C]`: (h^{i+1} or None for the last, skip)."""
    f, g = tf.split(self.gates[i](tf.concat([previous, current], axis=-1)), 2,
                    axis=-1)
    out = self.outputs[i](tf.tanh(f) * tf.sigmoid(g))
    if i == self.num_layers - 1:
      return None, out
    residual, skip = tf.split(out, 2, axis=-1)
    return current + residual, skip

  def _head(self, skips):
    return tf.nn.relu(self.output_layer(tf.nn.relu(skips)))

  def _features(self, u):
    """The stack on already shifted inputs u `[T, B, D]` -> `[T, B, C]`."""
    num_steps, batch_size = tf.shape(u)[0], tf.shape(u)[1]
    # Flat time-major rows: a delay of d steps is a pad of d*B rows.
    u = tf.reshape(u, [-1, self.input_size])
    h = self.input_layer(tf.concat([_shift(u, 1, batch_size), u], axis=-1))
    skips = 0.
    for i, d in enumerate(self.dilations):
      h, skip = self._block(i, _shift(h, d, batch_size), h)
      skips += skip
    return tf.reshape(self._head(skips),
                      [num_steps, batch_size, self.channels])

  def __call__(self, x):
    """The full-sequence pass.

    Args:
      x: `[T, B, D]`, time-major.

    Returns:
      features: `[T, B, C]`; `features[t]` depends on x[t - R:t] only.
    """
    x = tf.convert_to_tensor(x, self.dtype)
    return self._features(tf.pad(x, [[1, 0], [0, 0], [0, 0]])[:-1])

  def initial_cache(self, batch_size, method="cached", num_steps=None):
    """The cache `step` starts from, for step t = 0.

    Args:
      batch_size: int B.
      method: "cached" (per-layer queues of past inputs, O(layers) per step)
        or "naive" (the whole history, the stack rerun over it every step).
        Default value: "cached".
      num_steps: int T_max, the longest run (needed for "naive" only).

    Returns:
      cache: a `QueueCache` or a `PrefixCache` of zeros.
    """
    _check_sampling_method(method)
    if method == "naive":
      if num_steps is None:
        raise ValueError("method='naive' needs num_steps.")
      return PrefixCache(
          tf.constant(0),
          tf.zeros([num_steps, batch_size, self.input_size], self.dtype))
    queues = tuple(
        tf.TensorArray(self.dtype, size=d, clear_after_read=False).unstack(
            tf.zeros([d, batch_size, self.channels], self.dtype))
        for d in self.dilations)
    return QueueCache(
        tf.constant(0), tf.zeros([batch_size, self.input_size], self.dtype),
        queues)

  def step(self, inputs, cache):
    """The incremental pass: the feature of step t from x_{t-1}.

    Args:
      inputs: `[B, D]`, the previous frame x_{t-1} (zeros at t = 0).
      cache: from `initial_cache` or the previous `step`. Use each cache
        once: run eagerly, the cached method's TensorArray queues are
        updated in place, so stepping again from an older cache is wrong
        (inside a `tf.function`, as `sample` runs it, they are values).

    Returns:
      feature: `[B, C]`, equal to `self(x)[t]` up to rounding.
      cache: the cache for step t + 1.
    """
    inputs = tf.convert_to_tensor(inputs, self.dtype)
    if isinstance(cache, PrefixCache):
      # Naive: append u_t and rerun the stack over u_0 .. u_t.
      t = cache.step
      history = tf.tensor_scatter_nd_update(cache.history, [[t]],
                                            inputs[tf.newaxis])
      feature = self._features(history[:t + 1])[t]
      return feature, PrefixCache(t + 1, history)
    t = cache.step
    h = self.input_layer(tf.concat([cache.inputs, inputs], axis=-1))
    # Block l's slot t mod d_l holds h^l_{t-d_l} (zeros at first: the causal
    # padding); it is read, then overwritten with h^l_t.
    queues, skips = [], 0.
    for i, (d, queue) in enumerate(zip(self.dilations, cache.queues)):
      slot = tf.math.floormod(t, d)
      previous = queue.read(slot)
      queue = queue.write(slot, h)
      if hasattr(queue, "mark_used"):
        # Eager only: it lives on in the cache (silences tf_should_use).
        queue.mark_used()
      queues.append(queue)
      h, skip = self._block(i, previous, h)
      skips += skip
    return self._head(skips), QueueCache(t + 1, inputs, tuple(queues))


class WaveNet(base.SequenceModel):
  """An autoregressive WaveNet-style model with no latent variables.

  p(x) = prod_t p(x_t | x_{<t}): a `WaveNetStack` over the centred frames,
  then a linear emission head. The bounds are exact: see
  `log_likelihood`.

  Args:
    data_size: int D, the size of one observation.
    channels: int C, the stack's width. Default value: 32.
    dilations: the dilations of one stack. Default value: (1, 2, 4, 8, 16).
    num_stacks: repetitions of the dilations. Default value: 1.
    emission: "bernoulli" or "gaussian". Default value: "bernoulli".
    data_mean: optional `[D]` training mean. If None, inputs are not
      centred and the emission bias starts at zero.
    seed: int, for the initial weights. Default value: 0.

  #### Examples

  ```python
  model = WaveNet(88, channels=32, dilations=(1, 2, 4, 8), data_mean=mean)
  log_p = model.log_likelihood(x, mask)   # [B], equal to every bound:
  fivo = bounds.fivo(model, x, mask, num_particles=4)
  x_new = model.sample(100, batch_size=4, seed=(1, 2))  # [100, 4, 88]
  ```
  """

  def __init__(self, data_size, channels=32, dilations=(1, 2, 4, 8, 16),
               num_stacks=1, emission="bernoulli", data_mean=None, seed=0,
               dtype=tf.float32, name="wavenet"):
    super().__init__(name=name)
    mean = self._init_data(data_size, emission, data_mean, dtype)
    with self.name_scope:
      self.stack = WaveNetStack(data_size, channels, dilations, num_stacks,
                                seed=seed + 1, dtype=dtype, name="stack")
      self.emission = heads.emission(emission, channels, [], data_size,
                                     data_mean, mean, seed=seed + 2,
                                     dtype=dtype)

  @property
  def receptive_field(self):
    """How many past frames p(x_t | x_{<t}) sees."""
    return self.stack.receptive_field

  def emission_params(self, features):
    """Emission parameters from features `[R, C]`: (logits,) or (loc,
    scale), each `[R, D]`."""
    if self.emission_type == "bernoulli":
      return (self.emission.logits(features),)
    return self.emission.params(features)

  def emission_distribution(self, params):
    """p(x_t | x_{<t}) from `emission_params` (batch `[R]`, event `[D]`)."""
    if self.emission_type == "bernoulli":
      (logits,) = params
      dist = tfd.Bernoulli(logits=logits, dtype=logits.dtype)
    else:
      dist = tfd.Normal(*params)
    return tfd.Independent(dist, reinterpreted_batch_ndims=1)

  def prepare(self, x, mask):
    """The stack and the emission head, for all steps at once.

    p(x_t | x_{<t}) depends on x alone, so the whole emission is computed
    here on `[T*B]` rows rather than on `[N*B]` rows at every step.

    Returns:
      params: (logits,) for Bernoulli or (loc, scale) for Gaussian
        emissions, each `[T, B, D]`.
    """
    del mask  # Padded steps are ignored by the sweep; causality does the rest.
    features = self.stack(self._centre(x))
    shape = tf.shape(features)
    params = self.emission_params(
        tf.reshape(features, [-1, self.stack.channels]))
    return tuple(tf.reshape(p, [shape[0], shape[1], self.data_size])
                 for p in params)

  def initial_state(self, batch_size):
    # No latent state: an empty `[batch_size, 0]` tensor.
    return tf.zeros([batch_size, 0], self.dtype)

  def step(self, state, context_t, x_t, seed):
    """log p(x_t | x_{<t}) from the prepared parameters; no latent, so
    log p(z) = log q(z) = 0 and the (empty) state is unchanged."""
    del seed  # Nothing to sample.
    log_p_x = self.emission_distribution(context_t).log_prob(tf.cast(x_t, self.dtype))
    zeros = tf.zeros_like(log_p_x)
    return base.StepOutput(state=state, log_p_z=zeros,
                           log_p_x_given_z=log_p_x, log_q_z=zeros)

  def log_likelihood(self, x, mask=None):
    """The exact log p(x) = sum_t log p(x_t | x_{<t}), without the sweep.

    Args:
      x: `[T, B, D]`, time-major.
      mask: optional bool `[T, B]`, True where a step is real.

    Returns:
      log_likelihood: `[B]`.
    """
    log_p = self.emission_distribution(self.prepare(x, mask)).log_prob(
        tf.cast(x, self.dtype))  # [T, B]
    if mask is not None:
      log_p = tf.where(tf.cast(mask, tf.bool), log_p, tf.zeros_like(log_p))
    return tf.reduce_sum(log_p, axis=0)

  def sample(self, num_steps, batch_size, seed=None, return_means=False,
             method="cached", progress_fn=None):
    """Ancestral samples, one frame at a time.

    Args:
      num_steps: int T.
      batch_size: int B.
      seed: stateless seed or None. Step t draws with `fold_in(seed, t)`
        whatever the method.
      return_means: also return the emission means.
      method: "cached" (the stack's incremental pass, O(T x layers)) or
        "naive" (the stack rerun over the prefix every step, O(T^2 x
        layers)); both give the same samples. Default value: "cached".
      progress_fn: optional callable given each finished step t (see
        `SequenceModel._sample_loop`). Default value: None.

    Returns:
      x: `[T, B, D]`, and means `[T, B, D]` if `return_means`.
    """
    _check_sampling_method(method)
    seed = tfp.random.sanitize_seed(seed, salt="wavenet_sample")

    def step(t, cache, previous_x):
      feature, cache = self.stack.step(previous_x, cache)
      p_x = self.emission_distribution(self.emission_params(feature))
      x = p_x.sample(seed=tf.random.experimental.stateless_fold_in(seed, t))
      return cache, x, p_x.mean()

    return self._sample_loop(
        num_steps, batch_size,
        self.stack.initial_cache(batch_size, method, num_steps), step,
        return_means, progress_fn)

class VRNNWaveNet(vrnn.VRNN):
  """A VRNN whose emission also sees a WaveNet feature of x_{<t}.

      p(x_t | h_t, phi_z(z_t), feature_t),  feature = WaveNetStack(x - mean)

  The rest (LSTM, prior, filtering proposal, centring, initial biases) is
  `seqlvm.models.vrnn.VRNN`'s.

  Args:
    data_size: int D.
    hidden_size: int H, the LSTM and MLP width. Default value: 64.
    latent_size: int Z. Default value: 32.
    channels: int C, the stack's width. Default value: 32.
    dilations: the dilations of one stack. Default value: (1, 2, 4, 8, 16).
    num_stacks: repetitions of the dilations. Default value: 1.
    emission: "bernoulli" or "gaussian". Default value: "bernoulli".
    data_mean: optional `[D]` training mean.
    residual_proposal: add the prior mean to the proposal mean. Default
      value: True.
    latent, categories, temperature: the latent, as `VRNN`'s (a concrete
      latent is relaxed in training and hard in evaluation).
    seed: int, for the initial weights. Default value: 0.

  #### Examples

  ```python
  model = VRNNWaveNet(88, hidden_size=64, latent_size=32, channels=32)
  bound = bounds.fivo(model, x, mask, num_particles=4)
  x_new = model.sample(100, batch_size=4, seed=(1, 2))
  ```
  """

  def __init__(self, data_size, hidden_size=64, latent_size=32, channels=32,
               dilations=(1, 2, 4, 8, 16), num_stacks=1, emission="bernoulli",
               data_mean=None, residual_proposal=True, latent="gaussian",
               categories=16, temperature=0.67, seed=0, dtype=tf.float32,
               name="vrnn_wavenet"):
    # Read by `_emission_blocks` while the VRNN builds the emission.
    self._feature_channels = channels
    super().__init__(data_size, hidden_size=hidden_size,
                     latent_size=latent_size, emission=emission,
                     data_mean=data_mean, residual_proposal=residual_proposal,
                     latent=latent, categories=categories,
                     temperature=temperature, seed=seed, dtype=dtype,
                     name=name)
    with self.name_scope:
      self.stack = WaveNetStack(data_size, channels, dilations, num_stacks,
                                seed=seed + 7, dtype=dtype, name="stack")

  def _emission_blocks(self):
    """The emission reads [h_t, phi_z(z_t), feature_t]."""
    return super()._emission_blocks() + [("features",
                                          self._feature_channels)]

  @property
  def receptive_field(self):
    """How many past frames the stack's feature sees."""
    return self.stack.receptive_field

  def _project_features(self, features):
    """The emission's first-layer product of features `[R, C]`: `[R, H]`."""
    return self.emission.project(features=features)

  def prepare(self, x, mask):
    """The VRNN's per-batch context plus the stack's contribution.

    Returns:
      context: a `VRNNWaveNetContext`: lstm_inputs `[T, B, 4H]` and
        proposal_inputs `[T, B, H]` as `VRNN.prepare`, and emission_inputs
        `[T, B, H]`, the emission's first-layer product of the stack's
        feature of x_{<t} (without bias, which the step adds).
    """
    lstm_inputs, proposal_inputs = super().prepare(x, mask)
    features = self.stack(self._centre(x))
    shape = tf.shape(features)
    emission_inputs = self._project_features(
        tf.reshape(features, [-1, self.stack.channels]))
    return VRNNWaveNetContext(
        lstm_inputs, proposal_inputs,
        tf.reshape(emission_inputs, [shape[0], shape[1], self.hidden_size]))

  def _emission_given(self, rnn_out, encoded_z, emission_inputs):
    """p(x_t | h_t, phi_z(z_t), feature_t), the feature part precomputed."""
    return self.emission(h=rnn_out, z=encoded_z, precomputed=emission_inputs)

  def _emission_at(self, rnn_out, encoded_z, context_t):
    return self._emission_given(rnn_out, encoded_z,
                                context_t.emission_inputs)

  def sample(self, num_steps, batch_size, seed=None, return_means=False,
             method="cached", progress_fn=None):
    """Ancestral samples from the generative model.

    Args:
      num_steps: int T.
      batch_size: int B.
      seed: stateless seed or None; step t draws z_t and x_t with the two
        halves of `fold_in(seed, t)` whatever the method.
      return_means: also return the emission means.
      method: "cached" or "naive", the stack's pass (see `WaveNet.sample`).
        Default value: "cached".
      progress_fn: optional callable given each finished step t (see
        `SequenceModel._sample_loop`). Default value: None.

    Returns:
      x: `[T, B, D]`, and means `[T, B, D]` if `return_means`.
    """
    _check_sampling_method(method)
    seed = tfp.random.sanitize_seed(seed, salt="vrnn_wavenet_sample")

    def step(t, carry, previous_x):
      state, cache = carry
      z_seed, x_seed = tfp.random.split_seed(
          tf.random.experimental.stateless_fold_in(seed, t), n=2)
      rnn_out, state = self._sample_latent(state, previous_x, z_seed)
      feature, cache = self.stack.step(previous_x, cache)
      p_x = self._emission_given(rnn_out, state[2],
                                 self._project_features(feature))
      return (state, cache), p_x.sample(seed=x_seed), p_x.mean()

    carry = (self.initial_state(batch_size),
             self.stack.initial_cache(batch_size, method, num_steps))
    return self._sample_loop(num_steps, batch_size, carry, step,
                             return_means, progress_fn)
