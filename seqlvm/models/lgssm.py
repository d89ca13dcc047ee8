"""A linear-Gaussian state-space model: the oracle the bounds are tested on.

    z_0 ~ N(0, P0),  z_t = A z_{t-1} + N(0, Q),  x_t = C z_t + N(0, R)

Its exact log-likelihood comes from TFP's Kalman filter
(`tfd.LinearGaussianStateSpaceModel`). It implements the sequence-model
contract with three proposals:

- "bootstrap": q(z_t | z_{t-1}) = p(z_t | z_{t-1}).
- "filtering": the locally optimal q = p(z_t | z_{t-1}, x_t); the incremental
  weight is then p(x_t | z_{t-1}).
- "smoothing": the exact posterior p(z_t | z_{t-1}, x_{t..T}), from a backward
  information-form recursion in `prepare`. With it the weights telescope:
  every particle's full-path weight equals p(x_{1..T}), so the ELBO and IWAE
  estimates are exact, with zero variance.

Backward recursion (information form, beta_t(z) = p(x_{t..T} | z_{t-1} = z)
proportional to exp(-z' J_t z / 2 + z' h_t)):

    Jt_t = C' R^-1 C + J_{t+1},     ht_t = C' R^-1 x_t + h_{t+1}
    P_t  = S_t^-1 + Jt_t             (S_t = Q, or P0 at t = 0)
    q(z_t | z_{t-1}) = N(P_t^-1 (S_t^-1 A z_{t-1} + ht_t), P_t^-1)
    J_t  = A' (S_t^-1 - S_t^-1 P_t^-1 S_t^-1) A,  h_t = A' S_t^-1 P_t^-1 ht_t

Padded steps (mask False) contribute no observation term.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm.models import base

tfd = tfp.distributions

__all__ = ["LinearGaussianSSM", "LGSSMContext", "SmoothingContext",
           "PROPOSALS"]

PROPOSALS = ("bootstrap", "filtering", "smoothing")

LGSSMContext = collections.namedtuple(
    "LGSSMContext", ["first"])  # bool [T, B]: t == 0.
SmoothingContext = collections.namedtuple(
    "SmoothingContext",
    [
        "first",  # bool [T, B]: t == 0.
        "mean_matrix",  # [T, B, Dz, Dz]: the exact posterior's mean is
        "mean_offset",  # [T, B, Dz]:   mean_matrix z_{t-1} + mean_offset,
        "scale_tril",  # [T, B, Dz, Dz]: with this Cholesky factor.
    ])


def _scale_matrix(scale, size, dtype, label):
  scale = np.asarray(scale, np.float64)
  if scale.ndim == 0:
    scale = np.full([size], float(scale))
  if scale.ndim == 1:
    if scale.shape != (size,):
      raise ValueError(f"{label} must be a scalar, a vector [{size}] or a "
                       f"lower-triangular matrix [{size}, {size}]; got shape "
                       f"{scale.shape}.")
    scale = np.diag(scale)
  if scale.shape != (size, size):
    raise ValueError(f"{label} must be [{size}, {size}], got {scale.shape}.")
  if np.any(np.diag(scale) <= 0):
    raise ValueError(f"{label} must have a positive diagonal.")
  return tf.constant(np.tril(scale), dtype)


class LinearGaussianSSM(base.SequenceModel):
  """A linear-Gaussian state-space model with a choice of proposal.

  Args:
    transition_matrix: A `[Dz, Dz]`; a `tf.Variable` is kept as one
      (differentiable).
    transition_noise_scale: scale of the transition noise: a scalar, a
      vector `[Dz]` (diagonal) or a lower-triangular `[Dz, Dz]`.
    observation_matrix: C `[Dx, Dz]`.
    observation_noise_scale: likewise, for `[Dx]`.
    initial_scale: likewise, for the prior of z_0 (mean zero).
    proposal: "bootstrap", "filtering" or "smoothing". Default value:
      "bootstrap".
    dtype: Default value: the dtype of `transition_matrix` if it is a numpy
      or TF floating array, else float32.
  """

  def __init__(self, transition_matrix, transition_noise_scale,
               observation_matrix, observation_noise_scale, initial_scale,
               proposal="bootstrap", dtype=None, name="lgssm"):
    super().__init__(name=name)
    if proposal not in PROPOSALS:
      raise ValueError(f"Unknown proposal {proposal!r}; choose one of "
                       f"{', '.join(PROPOSALS)}.")
    if dtype is None:
      dtype = getattr(transition_matrix, "dtype", None)
      dtype = tf.as_dtype(dtype) if dtype is not None else tf.float32
      if not dtype.is_floating:
        dtype = tf.float32
    self.dtype = dtype
    a = tf.convert_to_tensor(transition_matrix, dtype) if not isinstance(
        transition_matrix, tf.Variable) else transition_matrix
    c = np.asarray(observation_matrix, np.float64)
    if a.shape.rank != 2 or a.shape[0] != a.shape[1]:
      raise ValueError(f"transition_matrix must be square [Dz, Dz], got "
                       f"{a.shape}.")
    if c.ndim != 2 or c.shape[1] != a.shape[0]:
      raise ValueError(f"observation_matrix must be [Dx, {a.shape[0]}], got "
                       f"{c.shape}.")
    self.latent_size = a.shape[0]
    self.data_size = c.shape[0]
    self.proposal = proposal
    # A tf.Variable transition matrix stays a variable, so that gradients of
    # the bounds and of the exact log-likelihood with respect to it exist.
    self.a = a
    self.c = tf.constant(c, dtype)
    self.q_tril = _scale_matrix(transition_noise_scale, self.latent_size,
                                dtype, "transition_noise_scale")
    self.r_tril = _scale_matrix(observation_noise_scale, self.data_size,
                                dtype, "observation_noise_scale")
    self.p0_tril = _scale_matrix(initial_scale, self.latent_size, dtype,
                                 "initial_scale")
    eye = tf.eye(self.latent_size, dtype=dtype)
    self._q_prec = tf.linalg.cholesky_solve(self.q_tril, eye)
    self._p0_prec = tf.linalg.cholesky_solve(self.p0_tril, eye)
    r_prec = tf.linalg.cholesky_solve(self.r_tril,
                                      tf.eye(self.data_size, dtype=dtype))
    # R and R^-1, for partial observations (`_partial_step`).
    self._r_cov = tf.matmul(self.r_tril, self.r_tril, transpose_b=True)
    self._r_prec = r_prec
    self._ctrinv = tf.matmul(self.c, r_prec, transpose_a=True)  # C' R^-1
    self._ctrinvc = tf.matmul(self._ctrinv, self.c)  # C' R^-1 C
    if proposal == "filtering":
      # Locally optimal proposal: cov S = (Sigma^-1 + C'R^-1C)^-1,
      # mean = S Sigma^-1 m + S C'R^-1 x, for Sigma = P0 (first) or Q.
      self._filtering = {}
      for key, prec in (("first", self._p0_prec), ("rest", self._q_prec)):
        cov = tf.linalg.inv(prec + self._ctrinvc)
        cov = (cov + tf.transpose(cov)) / 2.
        self._filtering[key] = (tf.matmul(cov, prec),
                                tf.matmul(cov, self._ctrinv),
                                tf.linalg.cholesky(cov))

  # --- The exact answer -----------------------------------------------------

  def _tfp_model(self, num_steps):
    zeros_z = tf.zeros([self.latent_size], self.dtype)
    return tfd.LinearGaussianStateSpaceModel(
        num_timesteps=num_steps,
        transition_matrix=tf.linalg.LinearOperatorFullMatrix(self.a),
        transition_noise=tfd.MultivariateNormalTriL(zeros_z, self.q_tril),
        observation_matrix=tf.linalg.LinearOperatorFullMatrix(self.c),
        observation_noise=tfd.MultivariateNormalTriL(
            tf.zeros([self.data_size], self.dtype), self.r_tril),
        initial_state_prior=tfd.MultivariateNormalTriL(zeros_z, self.p0_tril))

  def log_likelihood(self, x, mask=None):
    """Exact log p(x) per sequence by the Kalman filter.

    Args:
      x: `[T, B, Dx]`, time-major.
      mask: optional bool `[T, B]`, True where a step is real.

    Returns:
      log_p_x: `[B]`.
    """
    x = tf.convert_to_tensor(x, self.dtype)
    model = self._tfp_model(tf.shape(x)[0])
    x_bm = tf.transpose(x, [1, 0, 2])  # TFP is batch-major: [B, T, Dx].
    # TFP's mask is True where a step is *missing*: the opposite of ours.
    is_missing = None if mask is None else tf.logical_not(
        tf.transpose(tf.cast(mask, tf.bool)))
    return model.log_prob(x_bm, mask=is_missing)

  # --- The sequence-model contract -----------------------------------------

  def prepare(self, x, mask):
    num_steps, batch_size = tf.shape(x)[0], tf.shape(x)[1]
    first = tf.broadcast_to(
        tf.equal(tf.range(num_steps), 0)[:, tf.newaxis],
        [num_steps, batch_size])
    if self.proposal != "smoothing":
      return LGSSMContext(first)
    x = tf.cast(x, self.dtype)
    obs = tf.cast(mask, self.dtype)[..., tf.newaxis]  # [T, B, 1]
    eye = tf.eye(self.latent_size, batch_shape=[batch_size], dtype=self.dtype)
    sigma_prec = tf.stack(
        [self._p0_prec] + [self._q_prec], axis=0)  # [2, Dz, Dz]

    def backward(carry, inputs):
      (j_next, h_next), _ = carry
      x_t, obs_t, is_first = inputs
      j_tilde = j_next + obs_t[..., tf.newaxis] * self._ctrinvc
      h_tilde = h_next + obs_t * tf.linalg.matvec(self._ctrinv, x_t)
      prec = tf.gather(sigma_prec, tf.cast(tf.logical_not(is_first), tf.int32))
      post_prec = prec + j_tilde  # [B, Dz, Dz]
      chol_prec = tf.linalg.cholesky(post_prec)
      post_cov = tf.linalg.cholesky_solve(chol_prec, eye)
      post_cov = (post_cov + tf.linalg.matrix_transpose(post_cov)) / 2.
      mean_matrix = tf.matmul(post_cov, prec) @ self.a  # P^-1 S^-1 A
      mean_offset = tf.linalg.matvec(post_cov, h_tilde)  # P^-1 ht
      at_prec = tf.matmul(self.a, prec, transpose_a=True)  # A' S^-1
      j_t = tf.matmul(at_prec, self.a) - at_prec @ post_cov @ tf.matmul(
          prec, self.a)
      j_t = (j_t + tf.linalg.matrix_transpose(j_t)) / 2.
      h_t = tf.linalg.matvec(at_prec, mean_offset)
      return ((j_t, h_t),
              (mean_matrix, mean_offset, tf.linalg.cholesky(post_cov)))

    init = (tf.zeros([batch_size, self.latent_size, self.latent_size],
                     self.dtype),
            tf.zeros([batch_size, self.latent_size], self.dtype))
    _, (mean_matrix, mean_offset, scale_tril) = tf.scan(
        backward, (x, obs, first[:, 0]), initializer=(
            init, (init[0], init[1], init[0])), reverse=True)
    return SmoothingContext(first, mean_matrix, mean_offset, scale_tril)

  def initial_state(self, batch_size):
    return tf.zeros([batch_size, self.latent_size], self.dtype)

  def _prior(self, z_prev, first):
    loc = tf.where(first[:, tf.newaxis], tf.zeros_like(z_prev),
                   tf.linalg.matvec(self.a, z_prev))
    scale = tf.where(first[:, tf.newaxis, tf.newaxis], self.p0_tril,
                     self.q_tril)
    return tfd.MultivariateNormalTriL(loc, scale)

  def check_partial_observations(self):
    """The bootstrap and filtering proposals take partial observations;
    the smoothing proposal's backward recursion reads every entry."""
    if self.proposal == "smoothing":
      raise ValueError(
          "The LGSSM's smoothing proposal reads every entry of x (its "
          "backward recursion): use proposal='bootstrap' or 'filtering' "
          "with partial observations.")

  def step(self, state, context_t, x_t, seed, observed=None):
    if observed is not None:
      self.check_partial_observations()
      return self._partial_step(state, context_t, x_t, seed, observed)
    z_prev = state
    first = context_t.first
    x_t = tf.cast(x_t, self.dtype)
    p_z = self._prior(z_prev, first)
    if self.proposal == "bootstrap":
      q_z = p_z
    elif self.proposal == "filtering":
      _, f_gain, f_tril = self._filtering["first"]
      r_mat, r_gain, r_tril = self._filtering["rest"]
      cond = first[:, tf.newaxis]
      # The prior mean is 0 at the first step and A z_{t-1} after it.
      loc = tf.where(cond, tf.linalg.matvec(f_gain, x_t),
                     tf.linalg.matvec(r_mat, tf.linalg.matvec(self.a, z_prev))
                     + tf.linalg.matvec(r_gain, x_t))
      scale = tf.where(cond[..., tf.newaxis], f_tril, r_tril)
      q_z = tfd.MultivariateNormalTriL(loc, scale)
    else:
      loc = (tf.linalg.matvec(context_t.mean_matrix, z_prev) +
             context_t.mean_offset)
      q_z = tfd.MultivariateNormalTriL(loc, context_t.scale_tril)
    z = q_z.sample(seed=seed)
    p_x = tfd.MultivariateNormalTriL(tf.linalg.matvec(self.c, z), self.r_tril)
    return base.StepOutput(state=z, log_p_z=p_z.log_prob(z),
                           log_p_x_given_z=p_x.log_prob(x_t),
                           log_q_z=q_z.log_prob(z))

  def _observed_emission(self, m):
    """x_t's observed entries as a linear-Gaussian observation of z_t, per
    row: (C' = diag(m) C `[R, Dx, Dz]`, the Cholesky factor of R' `[R, Dx,
    Dx]`), where R' is R on the observed block and the identity, coupled to
    nothing, on the missing entries. log N(m x; C' z, R') is then the log
    density of the observed entries minus the missing ones' (k/2) log 2 pi.
    """
    outer = m[:, :, tf.newaxis] * m[:, tf.newaxis, :]
    r_obs = outer * self._r_cov + tf.linalg.diag(1. - m)
    return m[:, :, tf.newaxis] * self.c, tf.linalg.cholesky(r_obs)

  def _partial_step(self, state, context_t, x_t, seed, observed):
    """`step` given the observed entries only (see `base`): the weight is
    exact for any pattern; the filtering proposal is the locally optimal
    one given the observed entries (the prior where none is observed)."""
    z_prev = state
    first = context_t.first
    m = tf.cast(observed, self.dtype)  # [R, Dx]
    any_observed = tf.reduce_any(tf.cast(observed, tf.bool), axis=-1)
    x_t = tf.cast(x_t, self.dtype)
    x_obs = tf.where(m > 0, x_t, tf.zeros_like(x_t))  # missing entries: 0
    c_obs, r_obs_tril = self._observed_emission(m)
    p_z = self._prior(z_prev, first)
    q_z = p_z
    if self.proposal == "filtering":
      prior_prec = tf.where(first[:, tf.newaxis, tf.newaxis], self._p0_prec,
                            self._q_prec)  # [R, Dz, Dz]
      # C'^T R'^-1 (C' and m x) by Cholesky solves.
      rinv_c = tf.linalg.cholesky_solve(r_obs_tril, c_obs)  # [R, Dx, Dz]
      rinv_x = tf.linalg.cholesky_solve(r_obs_tril, x_obs[..., tf.newaxis])
      post_prec = prior_prec + tf.matmul(c_obs, rinv_c, transpose_a=True)
      post_cov = tf.linalg.inv(post_prec)
      post_cov = (post_cov + tf.linalg.matrix_transpose(post_cov)) / 2.
      loc = tf.linalg.matvec(post_cov, tf.linalg.matvec(
          prior_prec, p_z.loc) + tf.linalg.matvec(
              c_obs, rinv_x[..., 0], adjoint_a=True))
      scale = tf.linalg.cholesky(post_cov)
      prior_scale = p_z.scale.to_dense()
      # With nothing observed the proposal is the prior itself, so that the
      # step adds exactly zero (p/q = 1).
      q_z = tfd.MultivariateNormalTriL(
          tf.where(any_observed[:, tf.newaxis], loc, p_z.loc),
          tf.where(any_observed[:, tf.newaxis, tf.newaxis], scale,
                   prior_scale))
    z = q_z.sample(seed=seed)
    mean_x = tf.linalg.matvec(self.c, z)  # [R, Dx]
    missing = tf.cast(self.data_size, self.dtype) - tf.reduce_sum(m, -1)
    log_p_x = tfd.MultivariateNormalTriL(
        tf.linalg.matvec(c_obs, z), r_obs_tril).log_prob(x_obs) + (
            0.5 * missing * np.log(2. * np.pi))
    log_p_x = tf.where(any_observed, log_p_x, tf.zeros_like(log_p_x))
    log_q_z = q_z.log_prob(z)
    if self.proposal == "filtering":
      log_p_z = p_z.log_prob(z)
      log_q_z = tf.where(any_observed, log_q_z, log_p_z)
    else:
      log_p_z = log_q_z  # q = p: the ratio is exactly one.
    x_completed = self._complete(x_obs, m, mean_x,
                                 tfp.random.split_seed(seed, salt="x")[0])
    return base.StepOutput(state=z, log_p_z=log_p_z,
                           log_p_x_given_z=log_p_x, log_q_z=log_q_z,
                           x=x_completed)

  def _complete(self, x_obs, m, mean_x, seed):
    """x_t with its missing entries drawn from p(x_missing | x_observed,
    z_t): precision Lam = R^-1; mean mu_m - Lam_mm^-1 Lam_mo (x_o - mu_o),
    covariance Lam_mm^-1 (masked to the missing block per row)."""
    lam = self._r_prec  # R^-1
    u = 1. - m
    lam_mm = u[:, :, tf.newaxis] * u[:, tf.newaxis, :] * lam + tf.linalg.diag(
        m)  # the observed block replaced by the identity
    chol = tf.linalg.cholesky(lam_mm)
    b = u * tf.linalg.matvec(lam, m * (x_obs - mean_x))
    shift = tf.linalg.cholesky_solve(chol, b[..., tf.newaxis])[..., 0]
    noise = tf.random.stateless_normal(tf.shape(mean_x), seed,
                                       dtype=self.dtype)
    # L^-T eps has covariance (L L^T)^-1 = Lam_mm^-1.
    draw = tf.linalg.triangular_solve(chol, noise[..., tf.newaxis],
                                      lower=True, adjoint=True)[..., 0]
    return tf.where(m > 0, x_obs, mean_x - shift + draw)

  def sample(self, num_steps, batch_size, seed=None):
    """Draws x `[T, B, Dx]` from the model."""
    x = self._tfp_model(num_steps).sample(batch_size, seed=seed)
    return tf.transpose(x, [1, 0, 2])
