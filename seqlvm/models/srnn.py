"""The stochastic RNN (SRNN) of Fraccaro et al. 2016, with a smoothing proposal.

Generative model: a deterministic forward RNN over the previous observations,
and a state-space layer on top of it:

    d_t = LSTM_d(d_{t-1}, x_{t-1})    d_0 = 0, x_0 = data mean (0 centred)
    p(z_t | z_{t-1}, d_t)   diagonal Gaussian, MLP on [z_{t-1}, d_t]   z_0 = 0
    p(x_t | z_t, d_t)       Bernoulli (pianorolls) or diagonal Gaussian
                            (speech), MLP on [z_t, d_t]

Smoothing proposal: a backward RNN summarises the present and future,

    a_t = LSTM_a(a_{t+1}, [d_t, x_t])         a_{T+1} = 0
    q(z_t | z_{t-1}, a_t)   diagonal Gaussian, MLP on [z_{t-1}, a_t]

and with `residual_posterior=True` (the paper's "resq") the proposal mean is
the prior mean plus the MLP output.

How it maps onto the contract (`seqlvm.models.base`): d_t depends on x alone,
never on z, and a_t on x and d alone, so `prepare` runs both RNNs once per
batch on `[B]` rows (the backward one over reversed time). It also projects
d_t and a_t through the first layers of the prior, emission and proposal
MLPs, so the context holds three `[T, B, H]` tensors. The state carried
through the sweep is z_{t-1} alone, `[N*B, Z]`; a step runs only the z parts
of the three MLPs, with no recurrent cell per particle.

Inputs are centred: the RNNs see x - mean (the training mean), with zeros
before the first step; the emission bias starts at logit(mean) for Bernoulli
emissions and at the mean for Gaussian ones (FIVO's convention, as in
`seqlvm.models.vrnn`).

Masks: the backward recursion holds its state on padded steps (mask False),
so a_t at every real step is the same however much padding follows, and
padding leaves every bound unchanged. The forward RNN is causal, and padding
comes only after the real steps (`shapes.sequence_mask`), so it needs no mask.

Departures from the paper:
- LSTM cells for both deterministic RNNs, where the paper uses GRUs
  (`seqlvm.models.nets` offers an LSTM cell, and VRNN uses it too).
- One width: both RNNs have `hidden_size` units and every MLP one hidden
  layer of `hidden_size` units; the paper sizes each layer per data set.
- The paper trains with the ELBO and analytic per-step KL terms. Here a step
  returns the sampled log densities log p(z_t | .), log p(x_t | .) and
  log q(z_t | .), so the same model trains under ELBO, IWAE and FIVO; the
  KL terms are estimated by Monte Carlo.
- Input centring and the emission-bias initialisation above (FIVO's).
- Gaussian scales are softplus outputs floored at 1e-3
  (`heads.ConditionalNormal`).
- The paper's filtering ablation, q(z_t | z_{t-1}, d_t, x_t), is not offered.

Recommended import: `from seqlvm.models.srnn import SRNN`.

#### References
[1] Fraccaro, Sonderby, Paquet, Winther. Sequential Neural Models with
    Stochastic Layers. NeurIPS 2016. https://arxiv.org/abs/1605.07571
[2] Maddison et al. Filtering Variational Objectives. NeurIPS 2017.
    https://arxiv.org/abs/1705.09279
"""

import collections

import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.models import base
from seqlvm.models import heads
from seqlvm.models import nets

tfd = tfp.distributions

__all__ = ["SRNN", "SRNNContext"]

SRNNContext = collections.namedtuple(
    "SRNNContext",
    [
        "prior_inputs",  # [T, B, H]: the prior's first layer applied to d_t.
        "proposal_inputs",  # [T, B, H]: the proposal's first layer on a_t.
        "emission_inputs",  # [T, B, H]: the emission's first layer on d_t.
    ])


class SRNN(base.SequenceModel):
  """An SRNN with a smoothing proposal.

  Args:
    data_size: int D, the size of one observation.
    hidden_size: int H, the width of both LSTMs and of the MLPs' hidden
      layers. Default value: 64.
    latent_size: int Z. Default value: 32.
    emission: "bernoulli" or "gaussian". Default value: "bernoulli".
    data_mean: optional `[D]` training mean. If None, inputs are not
      centred and the emission bias starts at zero.
    residual_posterior: add the prior mean to the proposal mean (the paper's
      "resq"). Default value: True.
    seed: int, for the initial weights. Default value: 0.
  """

  def __init__(self, data_size, hidden_size=64, latent_size=32,
               emission="bernoulli", data_mean=None, residual_posterior=True,
               seed=0, dtype=tf.float32, name="srnn"):
    super().__init__(name=name)
    mean = self._init_data(data_size, emission, data_mean, dtype,
                           hidden_size=hidden_size, latent_size=latent_size)
    self.hidden_size = hidden_size
    self.latent_size = latent_size
    self.residual_posterior = residual_posterior
    h, z, d = hidden_size, latent_size, data_size
    with self.name_scope:
      self.forward_lstm = nets.LSTMCell([("x", d)], h, seed=seed + 1,
                                        dtype=dtype, name="forward_lstm")
      self.backward_lstm = nets.LSTMCell([("d", h), ("x", d)], h,
                                         seed=seed + 2, dtype=dtype,
                                         name="backward_lstm")
      # The prior and the emission read [z, d_t], the proposal [z, a_t].
      self.prior = heads.ConditionalNormal([("z", z), ("d", h)], [h], z,
                                           seed=seed + 3, dtype=dtype,
                                           name="prior")
      self.proposal = heads.ConditionalNormal([("z", z), ("a", h)], [h], z,
                                              seed=seed + 4, dtype=dtype,
                                              name="proposal")
      self.emission = heads.emission(
          emission, [("z", z), ("d", h)], [h], d, data_mean, mean,
          seed=seed + 5, dtype=dtype)

  def _run_lstm(self, cell, projected, mask=None, reverse=False):
    """Runs `cell` over time on inputs projected ahead.

    Args:
      cell: a `nets.LSTMCell`.
      projected: `[T, B, 4H]`, `cell.kernel.project` of the inputs of every
        step (the step adds the recurrent part and the bias).
      mask: optional bool `[T, B]`; where False the state is held.
      reverse: run from the last step to the first.

    Returns:
      outputs: `[T, B, H]`, the state h after each step (in time order).
    """
    batch_size = tf.shape(projected)[1]
    if mask is None:
      mask = tf.ones(tf.shape(projected)[:2], tf.bool)

    def body(state, elems):
      projected_t, mask_t = elems
      # All the inputs are in `projected_t`: the cell adds h W_h + b only.
      _, new_state = cell(state, precomputed=projected_t)
      return tuple(tf.where(mask_t[:, tf.newaxis], new, old)
                   for new, old in zip(new_state, state))

    outputs, _ = tf.scan(body, (projected, mask),
                         initializer=cell.initial_state(batch_size,
                                                        self.dtype),
                         reverse=reverse)
    return outputs

  def deterministic_states(self, x, mask=None):
    """The forward and backward RNN states, which depend on x alone.

    Args:
      x: `[T, B, D]`, time-major observations.
      mask: optional bool `[T, B]`, True where a step is real. Default
        value: None (every step is real).

    Returns:
      d: `[T, B, H]`, d_t = LSTM_d(d_{t-1}, x_{t-1}), a function of x_{<t}.
      a: `[T, B, H]`, a_t = LSTM_a(a_{t+1}, [d_t, x_t]), a function of the
        real steps of x; zero on padding that follows the real steps.
    """
    shape = tf.shape(x)
    num_steps, batch_size = shape[0], shape[1]
    d_size = self.data_size
    centred = tf.reshape(self._centre(x), [-1, d_size])  # [T*B, D]
    # x_{t-1} for every t: zeros (centred space) before the first step.
    previous = tf.concat(
        [tf.zeros([batch_size, d_size], self.dtype), centred[:-batch_size]],
        axis=0)
    forward_inputs = tf.reshape(
        self.forward_lstm.kernel.project(x=previous),
        [num_steps, batch_size, -1])
    # The forward RNN is causal: padding after the real steps cannot reach
    # them, so it runs unmasked.
    d = self._run_lstm(self.forward_lstm, forward_inputs)
    backward_inputs = tf.reshape(
        self.backward_lstm.kernel.project(
            d=tf.reshape(d, [-1, self.hidden_size]), x=centred),
        [num_steps, batch_size, -1])
    if mask is not None:
      mask = tf.cast(mask, tf.bool)
    a = self._run_lstm(self.backward_lstm, backward_inputs, mask=mask,
                       reverse=True)
    return d, a

  def proposal_modules(self):
    """The backward LSTM (a_t, read by the proposal alone) and the
    proposal's head."""
    return (self.backward_lstm, self.proposal)

  def prepare(self, x, mask):
    """Both RNNs and their projections, for all steps at once.

    The prior and the emission read [z, d_t] and the proposal [z_{t-1},
    a_t]; the d_t and a_t parts of their first layers are the same for every
    particle, so they are computed here on `[T*B]` rows instead of on
    `[N*B]` rows at every step.

    Args:
      x: `[T, B, D]`, time-major observations.
      mask: bool `[T, B]`, True where a step is real.

    Returns:
      context: an `SRNNContext` of three `[T, B, H]` tensors, the first-layer
        contributions (without bias) of d_t to the prior and the emission
        and of a_t to the proposal.
    """
    d, a = self.deterministic_states(x, mask)
    shape = tf.shape(d)
    flat_d = tf.reshape(d, [-1, self.hidden_size])
    flat_a = tf.reshape(a, [-1, self.hidden_size])
    def unflatten(projected):
      return tf.reshape(projected, [shape[0], shape[1], -1])

    return SRNNContext(
        prior_inputs=unflatten(self.prior.project(d=flat_d)),
        proposal_inputs=unflatten(self.proposal.project(a=flat_a)),
        emission_inputs=unflatten(self.emission.project(d=flat_d)))

  def initial_state(self, batch_size):
    # z_0 = 0.
    return tf.zeros([batch_size, self.latent_size], self.dtype)

  def _emission(self, z, emission_inputs):
    """p(x_t | z_t, d_t), with the d_t part of the first layer given."""
    return self.emission(z=z, precomputed=emission_inputs)

  def step(self, state, context_t, x_t, seed):
    previous_z = state
    prior_loc, prior_scale = self.prior.params(
        z=previous_z, precomputed=context_t.prior_inputs)
    p_z = tfd.Independent(tfd.Normal(prior_loc, prior_scale), 1)
    q_z = self.proposal(
        z=previous_z, precomputed=context_t.proposal_inputs,
        loc_offset=prior_loc if self.residual_posterior else None)
    z = q_z.sample(seed=seed)
    p_x = self._emission(z, context_t.emission_inputs)
    return base.StepOutput(
        state=z,
        log_p_z=p_z.log_prob(z),
        log_p_x_given_z=p_x.log_prob(tf.cast(x_t, self.dtype)),
        log_q_z=q_z.log_prob(z))

  def sample(self, num_steps, batch_size, seed=None, return_means=False,
             progress_fn=None):
    """Ancestral samples from the generative model.

    The forward RNN reads the model's own previous sample.

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
    seed = tfp.random.sanitize_seed(seed, salt="srnn_sample")

    def step(t, carry, previous_x):
      lstm_state, previous_z = carry
      z_seed, x_seed = tfp.random.split_seed(
          tf.random.experimental.stateless_fold_in(seed, t), n=2)
      d, lstm_state = self.forward_lstm(lstm_state, x=previous_x)
      z = self.prior(z=previous_z, d=d).sample(seed=z_seed)
      p_x = self.emission(z=z, d=d)
      return (lstm_state, z), p_x.sample(seed=x_seed), p_x.mean()

    carry = (self.forward_lstm.initial_state(batch_size, self.dtype),
             self.initial_state(batch_size))
    return self._sample_loop(num_steps, batch_size, carry, step,
                             return_means, progress_fn)
