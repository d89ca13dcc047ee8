"""The sequential Monte Carlo sweep behind every bound.

One function, `smc`, runs N particles through a sequence model and returns
the log of the particle estimate p_hat(x) of the marginal likelihood, per
sequence. ELBO, IWAE and FIVO differ only in the resampling criterion and in
how the final weights are reduced (see `seqlvm.bounds`); this module knows
neither the model nor which bound is in use.

The model is anything with the contract of `seqlvm.models.SequenceModel`:

    context = model.prepare(x, mask)           # nest of [T, B, ...], once
    state = model.initial_state(N * B)         # nest of [N*B, ...]
    out = model.step(state, context_t, x_t, seed)
    # out.state, out.log_p_z, out.log_p_x_given_z, out.log_q_z: [N*B]

At step t every particle draws z_t from the proposal and adds

    log alpha_t = log p(z_t | .) + log p(x_t | z_t, .) - log q(z_t | .)

to its log weight w (`kl_weight` beta, when given, makes the increment
log p(x_t | z_t, .) + beta * (log p(z_t | .) - log q(z_t | .)): a KL
annealed objective for training, not a bound unless beta = 1). Where the
criterion fires, log p_hat += logmeanexp(w),
ancestors are drawn from softmax(w), every particle's state is gathered from
its ancestor and w is reset to 0. At the end log p_hat += logmeanexp(w)
(or mean(w), for the ELBO with N independent particles).

Past the end of a sequence (mask False) the increment is 0 (`tf.where`, never
`w * mask`, which turns -inf into NaN), the state is carried unchanged and the
filter never resamples, so padding a batch with extra steps leaves the result
unchanged. The random stream of step t is `fold_in(seed, t)`, so it too is
independent of the padded length.

How gradients treat the ancestor draw is the `resampling_gradient`
estimator's choice (a `seqlvm.smc.gradients.ResamplingGradient`): gather by
ancestors with no gradient through the draw (`Stop`, FIVO's), reweight
(`Soft`), mix the parents (`Concrete`), or add the score-function term
(`Score`). The sweep carries the estimator's own state (`extra`) through its
loop without looking inside. The result's value is log p_hat in every case
except `Concrete` (whose particles are mixtures) and `Soft` with mixing
below 1 (another, still unbiased, estimator of p(x)).

The score-function term. With L_t the value of log p_hat once step t's
logmeanexp(w_t) is added, a resampling at step t contributes
(R_t - b_t) grad log P(a_t), where R_t = L_T - L_t is the part of log p_hat
that the draw a_t can influence. The result is

    log p_hat + S - stop_gradient(S),
    S = sum_t stop_gradient(R_t - b_t) log P(a_t),

whose value is log p_hat and whose gradient adds the term. The baseline b_t
is the sweep's own running mean: (L_t / steps so far) * steps left, the log
p_hat per step seen so far, extrapolated over the sequence's remaining real
steps. It depends only on what happened before the draw, so the estimator
stays unbiased; it needs no extra sweeps and no state kept between training
steps; and it removes the part of R_t that dominates its variance, a sum over
the remaining steps whose mean grows linearly with them (with no baseline the
term's variance grows like the square of the remaining length). Use
`gradients.Score(baseline="none")` to measure it without.

Recommended import: `from seqlvm.smc import smc`.

#### References
[1] Maddison, Lawson, Tucker, Heess, Norouzi, Mnih, Doucet, Teh. Filtering
    Variational Objectives. NeurIPS 2017. https://arxiv.org/abs/1705.09279
"""

import collections
import weakref

import tensorflow as tf
import tensorflow_probability as tfp

from seqlvm import shapes
from seqlvm.models import nets
from seqlvm.smc import criteria as criteria_lib
from seqlvm.smc import gradients as gradients_lib
from seqlvm.smc import resampling as resampling_lib

__all__ = ["smc", "SMCResult", "FINAL_REDUCTIONS", "gather_particles",
           "mix_particles", "trace_count"]

SMCResult = collections.namedtuple(
    "SMCResult",
    [
        "log_marginal",  # float [B]: log p_hat(x), the bound per sequence.
        "log_weights",  # float [T, N, B]: log weights after each step's
                        # increment, before any reset by resampling.
        "resampled",  # bool [T, B]: where the filter resampled.
        "ess",  # float [T, B]: effective sample size after each increment.
        "final_state",  # nest of [N*B, ...]: the particles after the last step.
    ])

FINAL_REDUCTIONS = ("logmeanexp", "mean")
_STOP = gradients_lib.Stop()  # the default estimator, one object: a cache key
# batch_weight_gradients batches the products whose weights have at least
# this many entries (`_WeightGradientBatcher`).
MIN_BATCHED_WEIGHTS = 65536


def _where_rows(cond, new, old):
  """tf.where with a `[R]` condition over tensors of shape `[R, ...]`."""
  cond = tf.reshape(cond, [-1] + [1] * (new.shape.rank - 1))
  return tf.where(cond, new, old)


def gather_particles(state, ancestors, batch_size):
  """Gathers a nest of `[N*B, ...]` by ancestors `[N, B]` (particle-major)."""
  # Row n*B + b takes row ancestors[n, b]*B + b.
  flat = tf.reshape(ancestors * batch_size + tf.range(batch_size)[tf.newaxis],
                    [-1])
  return tf.nest.map_structure(
      lambda s: tf.ensure_shape(tf.gather(s, flat), s.shape), state)


def mix_particles(state, mixing, ancestors, batch_size):
  """Relaxed resampling: new particle n is sum_k mixing[n, k] * particle k.

  Float leaves of the `[N*B, ...]` state are mixed; other leaves (integer
  counters, say) take the hard ancestors.
  """
  n = mixing.shape[0] or tf.shape(mixing)[0]

  def mix(s):
    if not s.dtype.is_floating:
      return gather_particles(s, ancestors, batch_size)
    # [B, N, K] @ [B, K, S] -> [B, N, S]; constant permutations only (XLA
    # cannot compile computed ones in a while-loop gradient).
    parents = tf.transpose(tf.reshape(s, [n, batch_size, -1]), [1, 0, 2])
    weights = tf.transpose(tf.cast(mixing, s.dtype), [2, 0, 1])
    mixed = tf.transpose(tf.matmul(weights, parents), [1, 0, 2])
    return tf.ensure_shape(tf.reshape(mixed, tf.shape(s)), s.shape)

  return tf.nest.map_structure(mix, state)


def _logmeanexp(log_weights):
  num_particles = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
  return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(num_particles)


def smc(model,
        x,
        mask=None,
        num_particles=4,
        resample_criterion_fn=criteria_lib.never,
        resample_fn=resampling_lib.multinomial,
        final_reduction="logmeanexp",
        seed=None,
        loop="while_loop",
        resampling_gradient=None,
        name=None,
        compiled=True,
        batch_weight_gradients=False,
        kl_weight=None):
  """Runs a particle filter over a batch of sequences.

  Called eagerly, the sweep runs as a compiled graph: one `tf.function` per
  model and options (N, the criterion, scheme, reduction and estimator, the
  data's D and dtype), cached and traced once, whose signature leaves T and B
  free and takes the seed as a tensor, so a new seed, batch size or length
  reuses it (`trace_count()` counts the traces). Inside a caller's
  `tf.function` (a training step, a Keras `train_step`) the sweep is built
  into the caller's graph instead. Gradients flow either way, under a
  `tf.GradientTape` too. The compiled sweep draws the same random numbers as
  the eager one: the result is the same for the same seed.

  Args:
    model: a `seqlvm.models.SequenceModel` (or anything with its contract).
    x: float `[T, B, D]`, time-major observations.
    mask: optional bool `[T, B]`, True where a step is real. Default value:
      None (every step is real).
    num_particles: Python int N >= 1. Default value: 4.
    resample_criterion_fn: log_weights `[N, B]` -> bool `[B]`, see
      `seqlvm.smc.criteria`. Default value: `criteria.never`.
    resample_fn: (log_weights `[N, B]`, seed) -> int32 ancestors `[N, B]`,
      see `seqlvm.smc.resampling`. Default value: `resampling.multinomial`.
    final_reduction: how the final weights enter log p_hat: "logmeanexp" (the
      particle estimate, IWAE and FIVO) or "mean" (N independent ELBOs
      averaged). Default value: "logmeanexp".
    seed: a stateless seed (int or `[2]` int tensor), or None for a random
      one. The same seed gives the same result.
    loop: "while_loop" (one `tf.while_loop` over time: compiles into one
      graph) or "python" (a Python loop calling one compiled step per time
      step, eagerly; the benchmarks' per-timestep baseline). Default value:
      "while_loop".
    resampling_gradient: the gradient estimator for the ancestor draw, a
      `gradients.ResamplingGradient`. Default value: None, which is
      `gradients.Stop()` (FIVO's).
    name: optional name scope.
    batch_weight_gradients: take the gradients of the network weights that
      the step multiplies (every `seqlvm.models.nets.Linear` product in
      `model.step`) after the loop, as one product over all T steps,
      instead of one small product per step inside the backward loop
      (`_WeightGradientBatcher`); the same gradients to float rounding.
      For training: it stores each product's input `[T, N*B, in]` and
      output gradient `[T, N*B, out]`, and gives first-order gradients only
      (the stored inputs carry no gradient: no Hessians through it).
      "while_loop" only. Default value: False.
    kl_weight: optional float scalar beta >= 0 (a tensor, so that a
      training step can change it without a new trace) that scales the
      latent term of every increment: log p(x_t | .) + beta * (log p(z_t |
      .) - log q(z_t | .)). For KL annealing ("warm-up", Bowman et al.
      2016, Sonderby et al. 2016) against posterior collapse; the result is
      a bound on log p(x) only at beta = 1. Default value: None (the bound,
      its increment computed exactly as without the option).
    compiled: False runs the sweep eagerly, op by op (for debugging; about
      100 times slower), as does `tf.config.run_functions_eagerly(True)`.
      The options are part of the cache's key, so pass the same criterion,
      scheme and estimator objects each call (`seqlvm.bounds` does), not new
      ones. Default value: True.

  Returns:
    result: an `SMCResult`; `result.log_marginal` `[B]` is the bound.

  Raises:
    ValueError: on a bad particle count, reduction, or observation rank, or
      a `kl_weight` that is not a scalar.
  """
  _check_arguments(num_particles, loop, final_reduction)
  estimator = resampling_gradient or _STOP
  if estimator.needs_independent_draws and not getattr(
      resample_fn, "independent_draws", False):
    raise ValueError(
        f"The {estimator.name!r} resampling gradient needs multinomial "
        "resampling: its score term is the log-probability of independent "
        f"categorical draws (got resample_fn "
        f"{getattr(resample_fn, '__name__', resample_fn)}).")
  x = tf.convert_to_tensor(x)
  if x.shape.rank is not None and x.shape.rank != 3:
    raise ValueError(f"x must be time-major [T, B, D]; got shape {x.shape}.")
  if batch_weight_gradients and loop != "while_loop":
    raise ValueError("batch_weight_gradients needs loop='while_loop'.")
  options = (num_particles, resample_criterion_fn, resample_fn,
             final_reduction, estimator, name, bool(batch_weight_gradients))
  if kl_weight is not None:
    kl_weight = (tf.cast(kl_weight, x.dtype) if tf.is_tensor(kl_weight)
                 else tf.convert_to_tensor(kl_weight, x.dtype))
    if kl_weight.shape.rank != 0:
      raise ValueError(f"kl_weight must be a scalar; got shape "
                       f"{kl_weight.shape}.")
  if compiled and loop == "while_loop" and tf.executing_eagerly():
    if mask is None:
      mask = tf.ones(tf.shape(x)[:2], tf.bool)
    sweep_fn = _compiled_sweep(model, options, x.shape[2], x.dtype,
                               kl_weighted=kl_weight is not None)
    arguments = [x, tf.cast(mask, tf.bool), _seed_tensor(seed)]
    return sweep_fn(*arguments, *([] if kl_weight is None else [kl_weight]))
  return _smc(model, x, mask, seed, loop, *options, kl_weight=kl_weight)


def _smc(model, x, mask, seed, loop, num_particles, resample_criterion_fn,
         resample_fn, final_reduction, estimator, name,
         batch_weight_gradients, kl_weight=None):
  """`smc` itself, built where it is called."""
  with tf.name_scope(name or "smc"):
    num_steps = tf.shape(x)[0]
    batch_size = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    if mask is None:
      mask = tf.ones([num_steps, batch_size], tf.bool)
    mask = tf.cast(mask, tf.bool)
    sweep = _Sweep(model, x, mask, tfp.random.sanitize_seed(seed, salt="smc"),
                   num_particles, batch_size, resample_criterion_fn,
                   resample_fn, estimator, kl_weight)
    if loop == "python":
      carry, traces = _python_loop(sweep, num_steps)
    else:
      carry, traces = _while_loop(sweep, num_steps, batch_weight_gradients)
    state, log_weights, log_p_hat, extra = carry
    if final_reduction == "logmeanexp":
      log_p_hat = log_p_hat + _logmeanexp(log_weights)
    else:
      log_p_hat = log_p_hat + tf.reduce_mean(log_weights, axis=0)
    if not sweep.never_resample:
      log_p_hat = sweep.estimator.finalize(log_p_hat, extra)
    traced_weights, fired, ess = traces
    return SMCResult(
        log_marginal=log_p_hat,
        log_weights=traced_weights,
        resampled=fired,
        ess=ess,
        final_state=state)


# model -> {(options, D, dtype): tf.function}. Weak keys: a model that is
# no longer used takes its compiled sweeps with it.
_COMPILED = weakref.WeakKeyDictionary()
_TRACES = [0]


def trace_count():
  """How many times a compiled sweep has been traced in this process."""
  return _TRACES[0]


def _seed_tensor(seed):
  """The seed as the int32 `[2]` tensor that `smc` would derive from it.

  A stateless seed (a pair, a tensor) is passed on as it is; a stateful one
  (an int or None) is drawn here, as TFP's `sanitize_seed` does.
  """
  if seed is None or isinstance(seed, int):
    return tfp.random.sanitize_seed(seed)
  return tf.cast(tf.convert_to_tensor(seed), tf.int32)


def _compiled_sweep(model, options, data_size, dtype, kl_weighted=False):
  """The cached `tf.function` (x, mask, seed) -> SMCResult for the options;
  (x, mask, seed, kl_weight) where `kl_weighted`."""
  functions = _COMPILED.setdefault(model, {})
  key = (options, data_size, dtype, kl_weighted)
  if key not in functions:
    model_ref = weakref.ref(model)  # the function must not keep it alive

    def sweep(x, mask, seed, kl_weight=None):
      _TRACES[0] += 1
      return _smc(model_ref(), x, mask, seed, "while_loop", *options,
                  kl_weight=kl_weight)

    signature = [tf.TensorSpec([None, None, data_size], dtype),
                 tf.TensorSpec([None, None], tf.bool),
                 tf.TensorSpec([2], tf.int32)]
    if kl_weighted:
      signature.append(tf.TensorSpec([], dtype))
    functions[key] = tf.function(sweep, input_signature=signature)
  return functions[key]


def _check_arguments(num_particles, loop, final_reduction):
  if not isinstance(num_particles, int) or num_particles < 1:
    raise ValueError(f"num_particles must be a positive Python int, got "
                     f"{num_particles!r}.")
  if loop not in ("while_loop", "python"):
    raise ValueError(f"loop must be 'while_loop' or 'python', got {loop!r}.")
  if final_reduction not in FINAL_REDUCTIONS:
    raise ValueError(f"final_reduction must be one of {FINAL_REDUCTIONS}, got "
                     f"{final_reduction!r}.")


class _Sweep:
  """One sweep's fixed parts (model, data, options) and its step.

  The carry is (state, log_weights `[N, B]`, log_p_hat `[B]`, extra): the
  particles, their weights, the estimate so far and the estimator's own
  state, which the sweep passes on without looking inside.
  """

  def __init__(self, model, x, mask, seed, num_particles, batch_size,
               resample_criterion_fn, resample_fn, estimator, kl_weight=None):
    self.model = model
    self.kl_weight = kl_weight
    self.x = x
    self.mask = mask
    self.seed = seed
    self.n = num_particles
    self.batch_size = batch_size
    self.dtype = x.dtype
    self.resample_criterion_fn = resample_criterion_fn
    self.resample_fn = resample_fn
    self.estimator = estimator
    self.never_resample = not getattr(resample_criterion_fn, "can_fire",
                                      True)
    self.context = model.prepare(x, mask)
    self.initial_state = model.initial_state(num_particles * batch_size)

  def initial_carry(self):
    extra = () if self.never_resample else self.estimator.initial_extra(
        self.mask, self.dtype)
    return (self.initial_state,
            tf.zeros([self.n, self.batch_size], self.dtype),
            tf.zeros([self.batch_size], self.dtype), extra)

  def _propose(self, t, state, log_weights, proposal_seed):
    """Step t's proposal and weights: the new state and log weights."""
    n, mask_t = self.n, self.mask[t]  # [B]
    x_t = shapes.tile_particles(self.x[t], n)  # [N*B, D]
    context_t = tf.nest.map_structure(
        lambda c: shapes.tile_particles(c[t], n), self.context)
    out = self.model.step(state, context_t, x_t, proposal_seed)
    if self.kl_weight is None:
      increment = out.log_p_z + out.log_p_x_given_z - out.log_q_z
    else:
      increment = out.log_p_x_given_z + tf.cast(
          self.kl_weight, out.log_p_z.dtype) * (out.log_p_z - out.log_q_z)
    log_alpha = tf.cast(shapes.split_particles(increment, n),
                        self.dtype)  # [N, B]
    log_alpha = tf.where(mask_t[tf.newaxis], log_alpha,
                         tf.zeros_like(log_alpha))
    mask_rows = shapes.tile_particles(mask_t, n)  # [N*B]
    state = tf.nest.map_structure(
        lambda new, old: _where_rows(mask_rows, new, old), out.state, state)
    return state, log_weights + log_alpha

  def _resample(self, t, state, log_weights, log_p_hat, extra, seed):
    """Where the criterion fires: log p_hat += logmeanexp(w), resample."""
    n, mask_t = self.n, self.mask[t]
    fire = tf.logical_and(self.resample_criterion_fn(log_weights), mask_t)
    increment = _logmeanexp(log_weights)
    log_p_hat = log_p_hat + tf.where(fire, increment,
                                     tf.zeros_like(log_p_hat))
    # A filter whose weights are all zero (log p_hat = -inf) has nothing
    # to resample from; it keeps its particles and stays at -inf.
    fire = tf.logical_and(fire, tf.math.is_finite(increment))
    new = self.estimator.resample(log_weights, seed, self.resample_fn)
    ancestors = tf.where(fire[tf.newaxis], new.ancestors,
                         tf.range(n)[:, tf.newaxis])
    if new.mixing is None:
      state = gather_particles(state, ancestors, self.batch_size)
    else:
      mixed = mix_particles(state, new.mixing, ancestors, self.batch_size)
      fire_rows = shapes.tile_particles(fire, n)
      state = tf.nest.map_structure(
          lambda new, old: _where_rows(fire_rows, new, old), mixed, state)
    log_weights = tf.where(fire[tf.newaxis], new.log_weights, log_weights)
    extra = self.estimator.update_extra(extra, new, fire, mask_t, log_p_hat)
    return state, log_weights, log_p_hat, extra, fire

  def step(self, t, state, log_weights, log_p_hat, extra):
    """One step: propose, weight, maybe resample. Returns the new carry and
    this step's traces (weights before any reset, fired flags, ESS)."""
    step_seed = tf.random.experimental.stateless_fold_in(self.seed, t)
    proposal_seed, resample_seed = tfp.random.split_seed(step_seed, n=2)
    state, log_weights = self._propose(t, state, log_weights, proposal_seed)
    traced_weights = log_weights
    ess = criteria_lib.effective_sample_size(log_weights)
    if self.never_resample:
      fire = tf.zeros([self.batch_size], tf.bool)
    else:
      state, log_weights, log_p_hat, extra, fire = self._resample(
          t, state, log_weights, log_p_hat, extra, resample_seed)
    return (state, log_weights, log_p_hat, extra), (traced_weights, fire,
                                                    ess)


class _WeightGradientBatcher:
  """The weight gradients of the step's products, batched over time.

  Autodiff of a `tf.while_loop` takes the gradient of a product y_t = x_t W
  inside the backward loop: one outer product x_t' dy_t of rank R per
  step (R = N*B rows, 16 at N = B = 4), which runs at a fraction of the
  matmul rate. Here each product in the step is instead

      y_t = x_t stop_gradient(W) + p_t,

  with p `[T, R, out]` zeros, read at step t from a TensorArray carried
  through the loop. The backward loop still gives dx_t = dy_t W' and now
  p's gradient, which is dY = [dy_1 ... dy_T]; the loop writes X = [x_1
  ... x_T] out, and p's custom gradient turns them into W's gradient, one
  product X' dY over all T*R rows after the loop. The sum over t is the
  same, in another order (float rounding).

  Only products whose weights have at least `min_weights` entries are
  batched: for smaller ones the TensorArrays cost more than the per-step
  outer products (measured in experiments/bench_train.py: 0.93x-0.95x at
  hidden 64, where the largest weight, the LSTM's, has 32,768 entries;
  1.06x-1.08x at hidden 256).

  The step's products are found by tracing it once ahead (its ops are
  unused): each `Linear` call, in order, through `nets.product_hook`.
  """

  def __init__(self, sweep, num_steps, min_weights=None):
    if min_weights is None:
      min_weights = MIN_BATCHED_WEIGHTS
    self._sweep = sweep
    # Every product in the step is on the particles' N*B rows; the probes'
    # shapes come from that, not from the traced-ahead step (whose ops then
    # stay unused, and are pruned, also when B is known only at run time).
    self._rows = sweep.n * sweep.batch_size
    self._calls = []  # (layer, start, stop, x, y) as traced ahead
    with nets.product_hook(self._record):
      sweep.step(tf.constant(0), *sweep.initial_carry())
    # Call index -> its slot in probes and inputs, for the batched ones.
    self._slots = {}
    for k, (layer, start, stop, _, _) in enumerate(self._calls):
      if (stop - start) * layer.output_size >= min_weights:
        self._slots[k] = len(self._slots)
    batched = [self._calls[k] for k in self._slots]
    self._holders = [{} for _ in batched]
    self.probes = tuple(
        tf.TensorArray(y.dtype, size=num_steps, element_shape=y.shape)
        .unstack(_zeros_with_weight_gradient(
            tf.convert_to_tensor(layer.weights(start, stop)),
            [num_steps, self._rows, layer.output_size], y.dtype, holder))
        for (layer, start, stop, _, y), holder in zip(batched,
                                                      self._holders))
    self.inputs = tuple(
        tf.TensorArray(x.dtype, size=num_steps, element_shape=x.shape)
        for _, _, _, x, _ in batched)

  def _record(self, layer, start, stop, x, matmul):
    rows = x.shape[0]
    if rows is not None and isinstance(self._rows, int) and rows != self._rows:
      raise ValueError(
          f"batch_weight_gradients: {layer.name} is applied to {rows} rows "
          f"in the step, not to the particles' N*B = {self._rows}.")
    y = matmul(x, layer.weights(start, stop))
    self._calls.append((layer, start, stop, x, y))
    return y

  def step(self, t, carry, probes, inputs):
    """`sweep.step` with batched weight gradients; returns (carry, traces,
    inputs with step t's written)."""
    calls, xs = [], []

    def apply(layer, start, stop, x, matmul):
      k = len(calls)
      calls.append(k)
      if k >= len(self._calls) or self._calls[k][:3] != (layer, start, stop):
        raise _products_differ(f"call {k}: {layer.name}")
      w = layer.weights(start, stop)
      if k not in self._slots:
        return matmul(x, w)
      xs.append(x)
      return matmul(x, tf.stop_gradient(w)) + probes[self._slots[k]].read(t)

    with nets.product_hook(apply):
      carry, traces = self._sweep.step(t, *carry)
    if len(calls) != len(self._calls):
      raise _products_differ(f"{len(calls)} products, {len(self._calls)} "
                             "traced ahead")
    return carry, traces, tuple(
        ta.write(t, tf.stop_gradient(x)) for ta, x in zip(inputs, xs))

  def finish(self, inputs):
    """Hands each product's stacked inputs `[T, R, in]` to its gradient."""
    for holder, ta in zip(self._holders, inputs):
      holder["inputs"] = ta.stack()


def _products_differ(where):
  return RuntimeError(
      f"batch_weight_gradients: the step's products differ between two "
      f"traces ({where}); the step must call the same layers in the same "
      "order every time.")


def _zeros_with_weight_gradient(w, shape, dtype, holder):
  """Zeros `shape` (`[T, R, out]`) whose gradient dY is passed on to w
  `[in, out]` as X' dY, X `[T, R, in]` being `holder["inputs"]` (filled in
  after the loop, before any gradient is taken)."""

  @tf.custom_gradient
  def zeros(w):
    def grad(upstream):
      inputs = holder["inputs"]
      return tf.matmul(tf.reshape(tf.cast(inputs, w.dtype), [-1, w.shape[0]]),
                       tf.reshape(tf.cast(upstream, w.dtype),
                                  [-1, w.shape[1]]), transpose_a=True)
    return tf.zeros(shape, dtype), grad

  return zeros(w)


def _while_loop(sweep, num_steps, batch_weight_gradients=False):
  """The sweep as one `tf.while_loop` over time: (carry, stacked traces).

  With `batch_weight_gradients`, through a `_WeightGradientBatcher`.
  """
  batcher = (_WeightGradientBatcher(sweep, num_steps)
             if batch_weight_gradients else None)

  def body(t, carry, weights_ta, resampled_ta, ess_ta, probes, inputs):
    if batcher is None:
      carry, (traced, fire, ess) = sweep.step(t, *carry)
    else:
      carry, (traced, fire, ess), inputs = batcher.step(t, carry, probes,
                                                        inputs)
    return (t + 1, carry, weights_ta.write(t, traced),
            resampled_ta.write(t, fire), ess_ta.write(t, ess), probes,
            inputs)

  loop_vars = (
      tf.constant(0), sweep.initial_carry(),
      tf.TensorArray(sweep.dtype, size=num_steps,
                     element_shape=[sweep.n, None]),
      tf.TensorArray(tf.bool, size=num_steps, element_shape=[None]),
      tf.TensorArray(sweep.dtype, size=num_steps, element_shape=[None]),
      () if batcher is None else batcher.probes,
      () if batcher is None else batcher.inputs,
  )
  _, carry, weights_ta, resampled_ta, ess_ta, _, inputs = tf.while_loop(
      lambda t, *_: t < num_steps, body, loop_vars,
      maximum_iterations=num_steps)
  if batcher is not None:
    batcher.finish(inputs)
  return carry, (weights_ta.stack(), resampled_ta.stack(), ess_ta.stack())


def _python_loop(sweep, num_steps):
  """The benchmarks' per-timestep baseline (and a test of the while loop):
  a Python loop over time calling one compiled step each, eagerly."""
  if int(num_steps) < 1:
    raise ValueError("loop='python' needs at least one time step.")
  compiled_step = tf.function(sweep.step)
  carry, traces = sweep.initial_carry(), []
  for t in range(int(num_steps)):
    carry, trace = compiled_step(tf.constant(t), *carry)
    traces.append(trace)
  return carry, tuple(tf.stack(list(v)) for v in zip(*traces))
