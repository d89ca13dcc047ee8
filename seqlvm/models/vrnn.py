"""The variational RNN (Chung et al. 2015) as used in the FIVO paper.

Generative model, with h_t the LSTM output:

    h_t = LSTM(h_{t-1}, [phi_x(x_{t-1}), phi_z(z_{t-1})])
    p(z_t | h_t)            diagonal Gaussian, MLP prior
    p(x_t | h_t, phi_z(z_t))  Bernoulli (pianorolls) or diagonal Gaussian (speech)

Filtering proposal q(z_t | h_t, phi_x(x_t)): a diagonal Gaussian whose mean is
the prior mean plus an MLP output (FIVO's residual parameterisation; turn it
off with `residual_proposal=False`).

Inputs are centred: phi_x sees x - mean (the training mean), with zeros before
the first step, as in the FIVO reference code; the emission bias starts at
logit(mean) for Bernoulli emissions and at the mean for Gaussian ones. The
features phi_x(x_t) do not depend on the particles, so `prepare` computes them
for all steps at once, outside the particle loop.

Concrete latents (`latent="concrete"`): z_t is a one-hot vector over
`categories` classes, discrete state such as a chord or a key. The prior
logits come from an MLP of h_t, the proposal's are the prior's plus an MLP
of [h_t, phi_x(x_t)] (the residual parameterisation again). Training
relaxes both to RelaxedOneHotCategorical at `temperature` (Maddison, Mnih
and Teh 2017; Jang, Gu and Poole 2017): z_t is a reparameterised point of
the simplex, so every bound is differentiable. Its densities are computed in
log space, as `tfd.ExpRelaxedOneHotCategorical` of y = log z (the paper's
advice for numerical stability); the Jacobian of exp is the same for prior
and proposal, so the weight p/q is that of the relaxed densities.
Evaluation and sampling use the hard model: `for_evaluation()` returns the
same model (same variables) with `tfd.OneHotCategorical` prior and proposal,
whose bounds are bounds on the discrete model's log p(x); `log_joint` gives
log p(x, z) of given one-hot paths, so small cases can be checked by
enumeration.

Deviation from the FIVO reference code: its LSTM, MLP and encoder widths all
equal the latent size; here the hidden width is `hidden_size`, separate from
`latent_size`. The Gaussian heads floor their scale at 1e-3 (FIVO: 0).

#### References
[1] Chung, Kastner, Dinh, Goel, Courville, Bengio. A Recurrent Latent Variable
    Model for Sequential Data. NeurIPS 2015. https://arxiv.org/abs/1506.02216
[2] Maddison et al. Filtering Variational Objectives. NeurIPS 2017.
    https://arxiv.org/abs/1705.09279
[3] Maddison, Mnih, Teh. The Concrete Distribution. ICLR 2017.
    https://arxiv.org/abs/1611.00712
[4] Jang, Gu, Poole. Categorical Reparameterization with Gumbel-Softmax.
    ICLR 2017. https://arxiv.org/abs/1611.01144
"""

import collections
import copy

import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.models import base
from seqlvm.models import heads
from seqlvm.models import nets

tfd = tfp.distributions

__all__ = ["VRNN", "VRNNContext", "LATENTS"]

LATENTS = ("gaussian", "concrete")

VRNNContext = collections.namedtuple(
    "VRNNContext",
    [
        "lstm_inputs",  # [T, B, 4H]: the LSTM's product of phi_x(x_{t-1}).
        "proposal_inputs",  # [T, B, H]: the proposal's product of phi_x(x_t).
    ])


class VRNN(base.SequenceModel):
  """A VRNN with a filtering proposal.

  Args:
    data_size: int D, the size of one observation.
    hidden_size: int H, the LSTM and MLP width. Default value: 64.
    latent_size: int Z. Default value: 32.
    emission: "bernoulli" or "gaussian". Default value: "bernoulli".
    data_mean: optional `[D]` training mean. If None, inputs are not
      centred and the emission bias starts at zero.
    residual_proposal: add the prior mean (or logits) to the proposal's.
      Default value: True.
    latent: "gaussian" or "concrete" (a relaxed one-hot over `categories`
      classes). Default value: "gaussian".
    categories: int K >= 2, the classes of a concrete latent (which replaces
      `latent_size`). Default value: 16.
    temperature: the relaxation's temperature, > 0. Default value: 0.67
      (2/3, Maddison et al.'s suggestion).
    seed: int, for the initial weights. Default value: 0.

  #### Examples

  ```python
  model = VRNN(88, latent="concrete", categories=12)
  loss = -bounds.fivo(model, x, mask)         # relaxed: differentiable
  report = bounds.fivo(model.for_evaluation(), x, mask)   # hard categorical
  ```
  """

  def __init__(self, data_size, hidden_size=64, latent_size=32,
               emission="bernoulli", data_mean=None, residual_proposal=True,
               latent="gaussian", categories=16, temperature=0.67,
               seed=0, dtype=tf.float32, name="vrnn"):
    super().__init__(name=name)
    if latent not in LATENTS:
      raise ValueError(f"Unknown latent {latent!r}; choose one of "
                       f"{', '.join(LATENTS)}.")
    if latent == "concrete":
      if int(categories) < 2:
        raise ValueError(f"A concrete latent needs categories >= 2, got "
                         f"{categories}.")
      if not float(temperature) > 0.:
        raise ValueError(f"temperature must be positive, got {temperature}.")
      latent_size = int(categories)
    mean = self._init_data(data_size, emission, data_mean, dtype,
                           hidden_size=hidden_size, latent_size=latent_size)
    self.hidden_size = hidden_size
    self.latent_size = latent_size
    self.residual_proposal = residual_proposal
    self.latent = latent
    self.temperature = float(temperature)
    self.hard = False  # True in the copy `for_evaluation` returns.
    h, z, d = hidden_size, latent_size, data_size
    latent_head = (heads.ConditionalNormal if latent == "gaussian" else
                   heads.ConditionalLogits)
    with self.name_scope:
      self.x_encoder = nets.MLP(d, [h], h, seed=seed + 1, dtype=dtype,
                                name="x_encoder")
      self.z_encoder = nets.MLP(z, [h], h, seed=seed + 2, dtype=dtype,
                                name="z_encoder")
      # The LSTM reads [phi_x(x_{t-1}), phi_z(z_{t-1})] (and its h).
      self.lstm = nets.LSTMCell([("x", h), ("z", h)], h, seed=seed + 3,
                                dtype=dtype, name="lstm")
      self.prior = latent_head(h, [h], z, seed=seed + 4, dtype=dtype,
                               name="prior")
      self.proposal = latent_head([("h", h), ("x", h)], [h], z,
                                  seed=seed + 5, dtype=dtype, name="proposal")
      self.emission = heads.emission(
          emission, self._emission_blocks(), [h], d, data_mean, mean,
          seed=seed + 6, dtype=dtype)

  def _emission_blocks(self):
    """The emission's inputs: [h_t, phi_z(z_t)] (subclasses add more)."""
    return [("h", self.hidden_size), ("z", self.hidden_size)]

  def proposal_modules(self):
    """The proposal's head (phi_x and the LSTM are the model's too)."""
    return (self.proposal,)

  def prepare(self, x, mask):
    """Everything that depends on x alone, for all steps at once.

    The LSTM reads [phi_x(x_{t-1}), phi_z(z_{t-1}), h] and the proposal's
    first layer reads [h, phi_x(x_t)]; the phi_x blocks of both products are
    the same for every particle, so they are computed here on `[T*B]` rows
    instead of on `[N*B]` rows at every step.

    Returns:
      context: a `VRNNContext`: lstm_inputs `[T, B, 4H]`, the LSTM
        pre-activations from phi_x(x_{t-1}) (without the LSTM bias, which
        the step adds), and proposal_inputs `[T, B, H]`, the proposal's
        first-layer product of phi_x(x_t).
    """
    del mask  # Padded steps are ignored by the sweep.
    shape = tf.shape(x)
    flat = tf.reshape(self._centre(x), [-1, self.data_size])
    encoded = self.x_encoder(flat)  # [T*B, H]
    first = self.x_encoder(tf.zeros([1, self.data_size], self.dtype))
    previous = tf.concat(
        [tf.tile(first, [shape[1], 1]), encoded[:-shape[1]]], axis=0)
    lstm_inputs = self.lstm.kernel.project(x=previous)
    proposal_inputs = self.proposal.project(x=encoded)
    return VRNNContext(
        tf.reshape(lstm_inputs, [shape[0], shape[1], -1]),
        tf.reshape(proposal_inputs, [shape[0], shape[1], -1]))

  def initial_state(self, batch_size):
    h, c = self.lstm.initial_state(batch_size, self.dtype)
    # phi_z of the previous latent; zero before the first step.
    return h, c, tf.zeros([batch_size, self.hidden_size], self.dtype)

  def transition(self, state, lstm_inputs):
    """The LSTM step: (h_t, new h, new c) from the state and the
    precomputed LSTM inputs of phi_x(x_{t-1})."""
    h, c, encoded_previous_z = state
    # lstm_inputs holds phi_x(x_{t-1}) W_x; the cell adds [phi_z, h] W + b.
    rnn_out, (h, c) = self.lstm((h, c), precomputed=lstm_inputs,
                                z=encoded_previous_z)
    return rnn_out, h, c

  # The hard twin is not a dependency: checkpoint and walk the model itself.
  _TF_MODULE_IGNORED_PROPERTIES = frozenset(
      base.SequenceModel._TF_MODULE_IGNORED_PROPERTIES | {"_hard_twin"})

  def for_evaluation(self):
    """The model to evaluate: for a concrete latent, the same variables with
    hard categorical prior and proposal; otherwise the model itself.

    The twin is a shallow copy made once and cached outside TensorFlow's
    tracking (checkpoint the model, not the twin)."""
    if self.latent == "gaussian" or self.hard:
      return self
    if "_hard_twin" not in self.__dict__:
      hard = copy.copy(self)
      hard.hard = True
      self.__dict__["_hard_twin"] = hard  # untracked
    return self.__dict__["_hard_twin"]

  def propose(self, rnn_out, proposal_inputs, seed):
    """Draws z_t from the proposal: (z, log p(z), log q(z)), each per row;
    relaxed for a concrete latent unless this is the hard twin."""
    if self.latent == "gaussian":
      prior_loc, prior_scale = self.prior.params(rnn_out)
      p_z = tfd.Independent(tfd.Normal(prior_loc, prior_scale), 1)
      q_z = self.proposal(
          h=rnn_out, precomputed=proposal_inputs,
          loc_offset=prior_loc if self.residual_proposal else None)
      z = q_z.sample(seed=seed)
      return z, p_z.log_prob(z), q_z.log_prob(z)
    prior_logits = self.prior(rnn_out)
    q_logits = self.proposal(h=rnn_out, precomputed=proposal_inputs)
    if self.residual_proposal:
      q_logits += prior_logits
    if self.hard:
      p_z = tfd.OneHotCategorical(logits=prior_logits, dtype=self.dtype)
      q_z = tfd.OneHotCategorical(logits=q_logits, dtype=self.dtype)
      z = q_z.sample(seed=seed)
      return z, p_z.log_prob(z), q_z.log_prob(z)
    p_y = tfd.ExpRelaxedOneHotCategorical(self.temperature,
                                          logits=prior_logits)
    q_y = tfd.ExpRelaxedOneHotCategorical(self.temperature, logits=q_logits)
    y = q_y.sample(seed=seed)  # log z, reparameterised
    return tf.exp(y), p_y.log_prob(y), q_y.log_prob(y)

  def _emission_at(self, rnn_out, encoded_z, context_t):
    """p(x_t | h_t, phi_z(z_t)); subclasses may read more of `context_t`."""
    del context_t
    return self.emission(h=rnn_out, z=encoded_z)

  def check_partial_observations(self):
    """The VRNN takes partial observations; a subclass that changes what
    its step reads (its emission, prepare, transition, proposal or step)
    must say so itself."""
    cls = type(self)
    if any(getattr(cls, name) is not getattr(VRNN, name) for name in (
        "_emission_at", "prepare", "transition", "propose", "step",
        "_partial_step", "partial_initial_state")):
      super().check_partial_observations()

  def partial_initial_state(self, batch_size):
    """The state of a partial-observation sweep: `initial_state` and the
    LSTM's product of phi_x of the previous completed x (zeros, centred,
    before the first step), which differs between particles."""
    first = self.lstm.kernel.project(x=self.x_encoder(
        tf.zeros([1, self.data_size], self.dtype)))
    return self.initial_state(batch_size) + (
        tf.tile(first, [batch_size, 1]),)

  def _prior_draw(self, rnn_out, seed):
    """z_t from the prior itself: (z, log p(z)), in the same space as
    `propose`'s densities (log z for a relaxed latent)."""
    if self.latent == "gaussian" or self.hard:
      p_z = self.prior_distribution(rnn_out)
      z = p_z.sample(seed=seed)
      return z, p_z.log_prob(z)
    p_y = tfd.ExpRelaxedOneHotCategorical(self.temperature,
                                          logits=self.prior(rnn_out))
    y = p_y.sample(seed=seed)
    return tf.exp(y), p_y.log_prob(y)

  def _partial_step(self, state, context_t, x_t, seed, observed):
    """`step` given the observed entries only (`seqlvm.models.base`).

    The LSTM reads phi_x of the particle's own completed x_{t-1} (carried
    in the state). The proposal reads phi_x(x_t) with the missing entries
    at the training mean (what `seqlvm.infer` hands `prepare`), so it
    depends on the observed entries only; a step with nothing observed
    proposes from the prior. Either way the weight is the exact p/q of the
    draw, with p(x_t | .) the emission's density of the observed entries.
    """
    h, c, encoded_previous_z, lstm_inputs = state
    rnn_out, h, c = self.transition((h, c, encoded_previous_z), lstm_inputs)
    z_seed, prior_seed, x_seed = tfp.random.split_seed(seed, n=3)
    observed = tf.cast(observed, tf.bool)
    any_observed = tf.reduce_any(observed, axis=-1)
    z_q, log_p_q, log_q_q = self.propose(rnn_out, context_t.proposal_inputs,
                                         z_seed)
    z_p, log_p_p = self._prior_draw(rnn_out, prior_seed)
    z = tf.where(any_observed[:, tf.newaxis], z_q, z_p)
    log_p_z = tf.where(any_observed, log_p_q, log_p_p)
    log_q_z = tf.where(any_observed, log_q_q, log_p_p)  # q = p: exactly 0
    encoded_z = self.z_encoder(z)
    p_x = self.emission(h=rnn_out, z=encoded_z)
    x_t = tf.cast(x_t, self.dtype)
    entries = p_x.distribution.log_prob(x_t)  # [R, D]
    log_p_x = tf.reduce_sum(tf.where(observed, entries,
                                     tf.zeros_like(entries)), axis=-1)
    x_completed = tf.where(observed, x_t, tf.cast(p_x.sample(seed=x_seed),
                                                  self.dtype))
    next_inputs = self.lstm.kernel.project(
        x=self.x_encoder(self._centre(x_completed)))
    return base.StepOutput(state=(h, c, encoded_z, next_inputs),
                           log_p_z=log_p_z, log_p_x_given_z=log_p_x,
                           log_q_z=log_q_z, x=x_completed)

  def step(self, state, context_t, x_t, seed, observed=None):
    if observed is not None:
      self.check_partial_observations()
      return self._partial_step(state, context_t, x_t, seed, observed)
    rnn_out, h, c = self.transition(state, context_t.lstm_inputs)
    z, log_p_z, log_q_z = self.propose(rnn_out,
                                            context_t.proposal_inputs, seed)
    encoded_z = self.z_encoder(z)
    p_x = self._emission_at(rnn_out, encoded_z, context_t)
    return base.StepOutput(
        state=(h, c, encoded_z),
        log_p_z=log_p_z,
        log_p_x_given_z=p_x.log_prob(tf.cast(x_t, self.dtype)),
        log_q_z=log_q_z)

  def prior_distribution(self, rnn_out):
    """p(z_t | h_t) of the generative model (hard for a concrete latent)."""
    if self.latent == "gaussian":
      return self.prior(rnn_out)
    return tfd.OneHotCategorical(logits=self.prior(rnn_out), dtype=self.dtype)

  def log_joint(self, x, z, mask=None):
    """log p(x, z) of given latent paths under the generative model.

    For a concrete latent z must be one-hot (the hard model), so that
    summing exp(log_joint) over all K^T paths gives p(x) exactly.

    Args:
      x: `[T, B, D]`.
      z: `[T, B, Z]` (one-hot `[T, B, K]` for a concrete latent).
      mask: optional bool `[T, B]`; padded steps add nothing.

    Returns:
      log_joint: `[B]`.
    """
    x = tf.convert_to_tensor(x, self.dtype)
    z = tf.convert_to_tensor(z, self.dtype)
    if mask is None:
      mask = tf.ones(tf.shape(x)[:2], tf.bool)
    context = self.prepare(x, mask)

    def body(carry, inputs):
      state, total = carry
      context_t, x_t, z_t, mask_t = inputs
      rnn_out, h, c = self.transition(state, context_t.lstm_inputs)
      encoded_z = self.z_encoder(z_t)
      log_p = (self.prior_distribution(rnn_out).log_prob(z_t) +
               self._emission_at(rnn_out, encoded_z, context_t).log_prob(x_t))
      new_state = (h, c, encoded_z)
      state = tf.nest.map_structure(
          lambda new, old: tf.where(mask_t[:, tf.newaxis], new, old),
          new_state, state)
      return state, total + tf.where(mask_t, log_p, tf.zeros_like(log_p))

    batch_size = tf.shape(x)[1]
    initial = (self.initial_state(batch_size),
               tf.zeros([batch_size], self.dtype))
    _, total = tf.foldl(body, (context, x, z, tf.cast(mask, tf.bool)),
                        initializer=initial)
    return total

  def _sample_latent(self, state, previous_x, seed):
    """One generative step up to the latent: (h_t, new state with phi_z).

    previous_x is the centred previous sample; z_t is drawn from the prior.
    """
    lstm_inputs = self.lstm.kernel.project(x=self.x_encoder(previous_x))
    rnn_out, h, c = self.transition(state, lstm_inputs)
    encoded_z = self.z_encoder(self.prior_distribution(rnn_out).sample(seed=seed))
    return rnn_out, (h, c, encoded_z)

  def sample(self, num_steps, batch_size, seed=None, return_means=False,
             progress_fn=None):
    """Ancestral samples from the generative model.

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
    seed = tfp.random.sanitize_seed(seed, salt="vrnn_sample")

    def step(t, state, previous_x):
      z_seed, x_seed = tfp.random.split_seed(
          tf.random.experimental.stateless_fold_in(seed, t), n=2)
      rnn_out, state = self._sample_latent(state, previous_x, z_seed)
      p_x = self.emission(h=rnn_out, z=state[2])
      return state, p_x.sample(seed=x_seed), p_x.mean()

    return self._sample_loop(num_steps, batch_size,
                             self.initial_state(batch_size), step,
                             return_means, progress_fn)
