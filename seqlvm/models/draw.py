"""DRAW (Gregor et al. 2015), one glimpse per timestep, as a sequence model.

DRAW is a recurrent encoder-decoder that builds an image on a canvas over a
few "glimpses". Here each glimpse is one timestep of a sequence, and the
canvas carries the emission parameters from one step to the next. With
h_enc, h_dec the outputs of two separate LSTMs and c the canvas `[D]`:

    xhat_t    = x_t - mean(p(x | c_{t-1}))       the error image
    r_t       = [x_t - data_mean, xhat_t]        read, without attention
    h_enc_t   = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
    q(z_t | h_enc_t)       = N(mu_q, sigma_q)    linear in h_enc_t
    p(z_t | h_dec_{t-1})   = N(mu_p, sigma_p)    linear in h_dec_{t-1}
    h_dec_t   = LSTM_dec(h_dec_{t-1}, [phi_x(x_{t-1}), z_t])
    c_t       = f * c_{t-1} + W_write h_dec_t    f = sigmoid(a), per dimension
    p(x_t | c_t) = Bernoulli(logits = c_t + b)   (pianorolls), or
                   N(c_t + b, sigma_x(h_dec_t))  (speech), diagonal

where mean(p(x | c)) is sigmoid(c + b) for Bernoulli emissions and c + b for
Gaussian ones, phi_x(x_{t-1}) is an MLP of the centred previous observation
(zeros before the first step), and sigma = max(softplus(. + 0.5), 1e-3) for
every scale. The emission bias b starts at logit(data_mean) (Bernoulli) or at
data_mean (Gaussian), as in FIVO. The incremental weight uses

    log_p_z = log p(z_t | h_dec_{t-1}),  log_q_z = log q(z_t | h_enc_t),
    log_p_x_given_z = log p(x_t | c_t).

The encoder is the proposal; `sample` runs the prior and the decoder alone.
The x-only parts of the two LSTMs' inputs (centred x_t for the encoder,
phi_x(x_{t-1}) for the decoder) are the same for every particle, so `prepare`
projects them once for all steps, outside the particle loop.

#### Departures from the paper

1. Glimpses are timesteps. DRAW draws one static image in a fixed number of
   glimpses and scores it once, at the end, with p(x | c_T). Here glimpse t
   is timestep t and scores x_t with p(x_t | c_t), so the model is a
   sequence model with one latent z_t and one observation x_t per step.
2. The decoder reads the previous observation: its input is
   [phi_x(x_{t-1}), z_t], not z_t alone. A generative model of sequences
   must condition x_t on x_{<t} (autoregressive); DRAW's decoder sees only
   the latents because its whole image is one observation.
3. Learned prior p(z_t | h_dec_{t-1}) instead of DRAW's fixed N(0, I), as in
   the later sequential variants (e.g. the VRNN of Chung et al. 2015 and
   convolutional DRAW, Gregor et al. 2016). With a fixed prior the latents
   could not carry the dependence between timesteps that the decoder state
   predicts.
4. Leaky canvas: c_t = f * c_{t-1} + write, with a learned per-dimension
   f = sigmoid(a), a initialised at logit(0.95), instead of DRAW's
   c_t = c_{t-1} + write. DRAW sums a handful of writes; a sequence has
   thousands of steps, and an unbounded sum would drift (its variance grows
   with t, saturating the sigmoid or the Gaussian mean). With f < 1 and
   |h_dec| < 1 the canvas is bounded by (sum |W_write| + |b_write|) / (1 - f)
   per dimension, and the model
   still learns how long each dimension persists (f near 1: notes that are
   held).
5. No attention: read and write are the paper's "without attention" forms
   (read = [x, xhat], write = a linear map of h_dec; section 3.1), with x
   centred by the training mean. Read and write attention with Gaussian
   filters (section 3.2) are for 2-D images and are not implemented.
6. The error image is against the emission mean, sigmoid(c_{t-1} + b) (or
   c_{t-1} + b), which includes the emission bias b; DRAW has no separate
   bias (xhat = x - sigmoid(c_{t-1})). With `data_mean` given, the canvas
   (zeros) and the bias start so that the first error image is
   x_1 - data_mean.
7. Scales: sigma = max(softplus(. + 0.5), 1e-3) as in `heads`, not
   exp(.), and the Gaussian emission (which DRAW does not use) takes its
   scale from a linear map of h_dec_t.

#### References
[1] Gregor, Danihelka, Graves, Rezende, Wierstra. DRAW: A Recurrent Neural
    Network For Image Generation. ICML 2015. https://arxiv.org/abs/1502.04623
[2] Chung, Kastner, Dinh, Goel, Courville, Bengio. A Recurrent Latent Variable
    Model for Sequential Data. NeurIPS 2015. https://arxiv.org/abs/1506.02216
[3] Gregor, Besse, Rezende, Danihelka, Wierstra. Towards Conceptual
    Compression. NeurIPS 2016. https://arxiv.org/abs/1604.08772
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.models import base
from seqlvm.models import heads
from seqlvm.models import nets

tfd = tfp.distributions

__all__ = ["DRAW", "DRAWContext", "CANVAS_FORGET_INIT"]

DRAWContext = collections.namedtuple(
    "DRAWContext",
    [
        "decoder_inputs",  # [T, B, 4H]: the decoder's product of
                           # phi_x(x_{t-1}).
        "encoder_inputs",  # [T, B, 4H]: the encoder's product of x_t - mean.
    ])

# Initial per-dimension canvas retention f = sigmoid(a): a write fades to
# 1/e in about 20 steps and the canvas is at most 20 times one write.
CANVAS_FORGET_INIT = 0.95


class DRAW(base.SequenceModel):
  """A sequential DRAW: encoder and decoder LSTMs writing to a leaky canvas.

  State (one row per particle): `(h_dec, c_dec, h_enc, c_enc, canvas)`, of
  shapes `[R, H]` four times and `[R, D]`.

  Args:
    data_size: int D, the size of one observation.
    hidden_size: int H, the width of both LSTMs and of phi_x. Default value:
      64.
    latent_size: int Z. Default value: 32.
    emission: "bernoulli" or "gaussian". Default value: "bernoulli".
    data_mean: optional `[D]` training mean. If None, inputs are not
      centred and the emission bias starts at zero.
    seed: int, for the initial weights. Default value: 0.
    dtype: float dtype of the variables. Default value: tf.float32.
    name: module name. Default value: "draw".

  Raises:
    ValueError: on an unknown emission, a size below 1, or a `data_mean`
      whose shape is not `[D]`.

  #### Examples

  ```python
  model = DRAW(88, hidden_size=64, latent_size=32, data_mean=train_mean)
  bound = seqlvm.bounds.fivo(model, x, mask, num_particles=4)  # [B]
  x = model.sample(100, 3, seed=(1, 2))  # [100, 3, 88]
  ```
  """

  def __init__(self, data_size, hidden_size=64, latent_size=32,
               emission="bernoulli", data_mean=None, seed=0, dtype=tf.float32,
               name="draw"):
    super().__init__(name=name)
    mean = self._init_data(data_size, emission, data_mean, dtype,
                           hidden_size=hidden_size, latent_size=latent_size)
    self.hidden_size = hidden_size
    self.latent_size = latent_size
    h, z, d = hidden_size, latent_size, data_size
    if emission == "bernoulli":
      bias = np.zeros([d]) if data_mean is None else heads.logit(mean)
    else:
      bias = mean
    forget_logit = np.log(CANVAS_FORGET_INIT) - np.log1p(-CANVAS_FORGET_INIT)
    with self.name_scope:
      self.x_encoder = nets.MLP(d, [h], h, seed=seed + 1, dtype=dtype,
                                name="x_encoder")
      # Encoder input [x_t - mean, xhat_t, h_dec_{t-1}]; x is projected in
      # `prepare`.
      self.encoder = nets.LSTMCell([("x", d), ("error", d), ("h_dec", h)], h,
                                   seed=seed + 2, dtype=dtype, name="encoder")
      # Decoder input [phi_x(x_{t-1}), z_t]; x is projected in `prepare`.
      self.decoder = nets.LSTMCell([("x", h), ("z", z)], h, seed=seed + 3,
                                   dtype=dtype, name="decoder")
      # Linear Gaussian heads, as DRAW's Q(z | h_enc).
      self.prior = heads.ConditionalNormal(h, [], z, seed=seed + 4,
                                           dtype=dtype, name="prior")
      self.proposal = heads.ConditionalNormal(h, [], z, seed=seed + 5,
                                              dtype=dtype, name="proposal")
      self.write = nets.Linear(h, d, seed=seed + 6, dtype=dtype, name="write")
      self.canvas_forget_logit = tf.Variable(
          tf.fill([d], tf.constant(forget_logit, dtype)),
          name="canvas_forget_logit")
      self.emission_bias = tf.Variable(tf.cast(bias, dtype),
                                       name="emission_bias")
      if emission == "gaussian":
        self.emission_scale = nets.Linear(h, d, seed=seed + 7, dtype=dtype,
                                          name="emission_scale")

  def _emission_mean(self, canvas):
    """The mean of p(x | canvas) `[R, D]`: probabilities or Gaussian means."""
    if self.emission_type == "bernoulli":
      return tf.sigmoid(canvas + self.emission_bias)
    return canvas + self.emission_bias

  def _emission(self, canvas, h_dec):
    """p(x_t | c_t), batch_shape `[R]`, event_shape `[D]`."""
    if self.emission_type == "bernoulli":
      logits = canvas + self.emission_bias
      return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=logits.dtype),
                             reinterpreted_batch_ndims=1)
    scale = tf.maximum(tf.nn.softplus(self.emission_scale(h_dec) + 0.5), 1e-3)
    return tfd.Independent(tfd.Normal(canvas + self.emission_bias, scale),
                           reinterpreted_batch_ndims=1)

  def proposal_modules(self):
    """The encoder LSTM (h_enc, read by the proposal alone) and the
    proposal's head."""
    return (self.encoder, self.proposal)

  def prepare(self, x, mask):
    """Everything that depends on x alone, for all steps at once.

    The encoder reads [x_t - mean, xhat_t, h_dec_{t-1}] and the decoder
    [phi_x(x_{t-1}), z_t]; the x-only columns of both products are the same
    for every particle, so they are computed here on `[T*B]` rows instead of
    on `[N*B]` rows at every step.

    Args:
      x: `[T, B, D]` observations.
      mask: bool `[T, B]`; unused (the sweep ignores padded steps).

    Returns:
      context: a `DRAWContext`: decoder_inputs `[T, B, 4H]`, the decoder
        LSTM pre-activations from phi_x(x_{t-1}) (without the LSTM bias,
        which the step adds), and encoder_inputs `[T, B, 4H]`, the encoder
        LSTM pre-activations from x_t - mean.
    """
    del mask  # Padded steps are ignored by the sweep.
    shape = tf.shape(x)
    centred = tf.reshape(self._centre(x), [-1, self.data_size])  # [T*B, D]
    encoded = self.x_encoder(centred)  # [T*B, H]
    first = self.x_encoder(tf.zeros([1, self.data_size], self.dtype))
    previous = tf.concat(
        [tf.tile(first, [shape[1], 1]), encoded[:-shape[1]]], axis=0)
    decoder_inputs = self.decoder.kernel.project(x=previous)
    encoder_inputs = self.encoder.kernel.project(x=centred)
    return DRAWContext(
        tf.reshape(decoder_inputs, [shape[0], shape[1], -1]),
        tf.reshape(encoder_inputs, [shape[0], shape[1], -1]))

  def initial_state(self, batch_size):
    h_dec, c_dec = self.decoder.initial_state(batch_size, self.dtype)
    h_enc, c_enc = self.encoder.initial_state(batch_size, self.dtype)
    canvas = tf.zeros([batch_size, self.data_size], self.dtype)
    return h_dec, c_dec, h_enc, c_enc, canvas

  def _decode(self, h_dec, c_dec, canvas, z, decoder_inputs):
    """The decoder LSTM and the canvas write; returns h_dec, c_dec, canvas."""
    # decoder_inputs holds phi_x(x_{t-1}) W_x; the cell adds [z, h] W + b.
    h_dec, (_, c_dec) = self.decoder((h_dec, c_dec),
                                     precomputed=decoder_inputs, z=z)
    forget = tf.sigmoid(self.canvas_forget_logit)
    return h_dec, c_dec, forget * canvas + self.write(h_dec)

  def step(self, state, context_t, x_t, seed):
    h_dec, c_dec, h_enc, c_enc, canvas = state
    x_t = tf.cast(x_t, self.dtype)
    # Read without attention: [x_t - mean, xhat_t]; the first part is in
    # encoder_inputs, so the cell gets [xhat_t, h_dec_{t-1}] (+ h_enc).
    error = x_t - self._emission_mean(canvas)
    h_enc, (_, c_enc) = self.encoder(
        (h_enc, c_enc), precomputed=context_t.encoder_inputs, error=error,
        h_dec=h_dec)
    p_z = self.prior(h_dec)
    q_z = self.proposal(h_enc)
    z = q_z.sample(seed=seed)
    h_dec, c_dec, canvas = self._decode(h_dec, c_dec, canvas, z,
                                        context_t.decoder_inputs)
    p_x = self._emission(canvas, h_dec)
    return base.StepOutput(
        state=(h_dec, c_dec, h_enc, c_enc, canvas),
        log_p_z=p_z.log_prob(z),
        log_p_x_given_z=p_x.log_prob(x_t),
        log_q_z=q_z.log_prob(z))

  def sample(self, num_steps, batch_size, seed=None, return_means=False,
             progress_fn=None):
    """Ancestral samples from the prior and the decoder (no encoder).

    Args:
      num_steps: int T.
      batch_size: int B.
      seed: stateless seed or None.
      return_means: also return the emission means (note probabilities for
        Bernoulli emissions), which make smoother pictures.
      progress_fn: optional callable given each finished step t (see
        `SequenceModel._sample_loop`). Default value: None.

    Returns:
      x: `[T, B, D]`, and means `[T, B, D]` if `return_means`.
    """
    seed = tfp.random.sanitize_seed(seed, salt="draw_sample")

    def step(t, state, previous_x):
      z_seed, x_seed = tfp.random.split_seed(
          tf.random.experimental.stateless_fold_in(seed, t), n=2)
      h_dec, c_dec, canvas = state
      decoder_inputs = self.decoder.kernel.project(
          x=self.x_encoder(previous_x))
      z = self.prior(h_dec).sample(seed=z_seed)
      h_dec, c_dec, canvas = self._decode(h_dec, c_dec, canvas, z,
                                          decoder_inputs)
      p_x = self._emission(canvas, h_dec)
      return (h_dec, c_dec, canvas), p_x.sample(seed=x_seed), p_x.mean()

    h_dec, c_dec, _, _, canvas = self.initial_state(batch_size)
    return self._sample_loop(num_steps, batch_size, (h_dec, c_dec, canvas),
                             step, return_means, progress_fn)
