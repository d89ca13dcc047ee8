"""The names users type, one registry per concept, and their rules.

Every option a user chooses by name (a model, an emission, a latent, a bound,
a resampling criterion, scheme or gradient estimator) is registered here
once, with its help text and where its implementation lives. The command
line takes its `choices=` and help from these registries, the config
validates against them, and the run layer turns a name into its callable
once, at the edge (`Registry.load`), so that only callables flow down to the
SMC sweep and the models.

This module imports no TensorFlow (nor anything of seqlvm that does):
`seqlvm --help` and a mistyped flag answer at once.

Adding an option: one `Entry` here and its implementation; a new model also
needs nothing else (`seqlvm.run.factory` passes it the config's settings
that its constructor accepts).

Recommended import: `from seqlvm import registry`.
"""

import collections
import importlib

from seqlvm.errors import ConfigError

__all__ = ["Entry", "Registry", "MODELS", "LATENTS", "EMISSIONS",
           "EMISSION_CHOICES", "PRECISIONS", "BOUNDS", "CRITERIA", "SCHEMES",
           "GRADIENTS", "ON_NONFINITE", "SCHEDULES", "SPLITS", "DISTRIBUTE",
           "CHECKPOINTS",
           "PIANOROLL_SETS", "RESOLUTIONS", "gradient_scheme_problem",
           "latent_problem"]

Entry = collections.namedtuple("Entry", ["name", "help", "target", "meta"])


class Registry:
  """The named choices of one concept.

  Args:
    concept: what a name names, for messages ("resampling scheme").
    entries: `Entry`s, in the order the help lists them.
  """

  def __init__(self, concept, entries):
    self.concept = concept
    self._entries = collections.OrderedDict((e.name, e) for e in entries)

  @property
  def names(self):
    return tuple(self._entries)

  def __contains__(self, name):
    return name in self._entries

  def __iter__(self):
    return iter(self._entries)

  def __len__(self):
    return len(self._entries)

  def __getitem__(self, name):
    self.check(name)
    return self._entries[name]

  def meta(self, name, key, default=None):
    return self[name].meta.get(key, default)

  def check(self, name):
    """Raises ConfigError naming the choices if `name` is not registered."""
    if name not in self._entries:
      raise ConfigError(f"Unknown {self.concept} {name!r}; choose one of "
                        f"{', '.join(self._entries)}.")

  def help(self):
    """"a (what a is), b (what b is)": the choices for a flag's help."""
    return ", ".join(f"{e.name} ({e.help})" if e.help else e.name
                     for e in self._entries.values())

  def build(self, name, **options):
    """The implementation called with the options its entry declares.

    An entry's `params` meta maps the implementation's argument names to
    option names (e.g. {"mixing": "soft_mixing"}); other options are not
    passed.
    """
    params = self.meta(name, "params", {})
    return self.load(name)(**{arg: options[option]
                              for arg, option in params.items()
                              if option in options})

  def load(self, name):
    """The implementation `name` registers (imported on first use)."""
    target = self[name].target
    if target is None:
      raise ConfigError(f"The {self.concept} {name!r} has no implementation "
                        "to load.")
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _entry(name, help_text="", target=None, **meta):
  return Entry(name, help_text, target, meta)


MODELS = Registry("model", [
    _entry("vrnn", "Chung et al. 2015", "seqlvm.models.vrnn:VRNN",
           latents=("gaussian", "concrete"), has_latents=True),
    _entry("srnn", "Fraccaro et al. 2016", "seqlvm.models.srnn:SRNN",
           latents=("gaussian",), has_latents=True),
    _entry("draw", "a DRAW-style encoder-decoder", "seqlvm.models.draw:DRAW",
           latents=("gaussian",), has_latents=True),
    _entry("vrnn-wavenet", "a VRNN with a WaveNet-style emission",
           "seqlvm.models.wavenet:VRNNWaveNet",
           latents=("gaussian", "concrete"), has_latents=True, wavenet=True),
    _entry("wavenet", "no latents: exact likelihood",
           "seqlvm.models.wavenet:WaveNet", latents=("gaussian",),
           has_latents=False, wavenet=True),
])

# The VRNN's latent: diagonal Gaussian, or a relaxed one-hot over categories.
LATENTS = Registry("latent", [
    _entry("gaussian", "a diagonal Gaussian of --latent-size"),
    _entry("concrete", "a relaxed one-hot over --categories classes, trained "
           "relaxed and evaluated and sampled with the hard categorical"),
])

# The emission distributions a model can have.
EMISSIONS = Registry("emission", [
    _entry("bernoulli", "binary data: pianorolls"),
    _entry("gaussian", "diagonal Gaussian: real-valued data such as speech "
           "frames"),
])
# What a config may ask for: "auto" is the data's natural emission.
EMISSION_CHOICES = ("auto",) + EMISSIONS.names

# The dtype of the networks' dense products in training
# (`seqlvm.models.nets.matmul_precision`; the weights, activations and log
# weights stay float32). Not float16: training it needs loss scaling, which
# seqlvm does not do (its gradients would underflow).
PRECISIONS = Registry("precision", [
    _entry("float32", "every product in float32"),
    _entry("bfloat16", "dense products in bfloat16 (float32 weights, "
           "activations and log weights): for accelerators with bfloat16 "
           "units; on most CPUs slower"),
])

BOUNDS = Registry("bound", [
    _entry("elbo", "the evidence lower bound", "seqlvm.bounds:elbo"),
    _entry("iwae", "importance weighted, never resampled",
           "seqlvm.bounds:iwae"),
    _entry("fivo", "a particle filter's log p_hat", "seqlvm.bounds:fivo"),
])

CRITERIA = Registry("resampling criterion", [
    _entry("ess", "when the ESS falls below --threshold * N",
           "seqlvm.smc.criteria:EssBelowThreshold",
           params={"threshold": "threshold"}),
    _entry("always", "at every step", "seqlvm.smc.criteria:Always"),
    _entry("never", "never: the IWAE", "seqlvm.smc.criteria:Never"),
])

SCHEMES = Registry("resampling scheme", [
    _entry("multinomial", "", "seqlvm.smc.resampling:multinomial"),
    _entry("systematic", "", "seqlvm.smc.resampling:systematic"),
    _entry("stratified", "", "seqlvm.smc.resampling:stratified"),
    _entry("residual", "", "seqlvm.smc.resampling:residual"),
])

GRADIENTS = Registry("resampling gradient", [
    _entry("stop", "FIVO's, biased, low variance",
           "seqlvm.smc.gradients:Stop"),
    _entry("score", "adds the score-function term with a running-mean "
           "baseline: unbiased with --resampling always, whereas the ESS "
           "schedule itself depends on the parameters; multinomial scheme",
           "seqlvm.smc.gradients:Score",
           params={"baseline": "score_baseline"},
           multinomial_only="its score term is the log-probability of "
           "independent categorical draws"),
    _entry("soft", "mixture with the uniform, reweighted; --soft-mixing",
           "seqlvm.smc.gradients:Soft",
           params={"mixing": "soft_mixing"}),
    _entry("concrete", "relaxed draw, particles mix their parents; "
           "--resampling-temperature", "seqlvm.smc.gradients:Concrete",
           params={"temperature": "resampling_temperature"},
           multinomial_only="it relaxes independent categorical draws"),
])

ON_NONFINITE = Registry("non-finite policy", [
    _entry("stop", "keep the last good state"),
    _entry("skip", "skip the batch with a warning"),
])

# Learning-rate schedules (Keras' schedules, `seqlvm.run.factory`); any of
# them may start with a linear warm-up (--warmup-steps).
SCHEDULES = Registry("learning-rate schedule", [
    _entry("constant", "--learning-rate throughout (FIVO's reference)"),
    _entry("exponential", "times --lr-decay-rate every --lr-decay-steps, "
           "smoothly", "tf_keras.optimizers.schedules:ExponentialDecay"),
    _entry("cosine", "cosine decay from --learning-rate to "
           "--lr-min-fraction of it over --lr-decay-steps",
           "tf_keras.optimizers.schedules:CosineDecay"),
])

SPLITS = ("train", "valid", "test")

# How training and evaluation use more than one device (`seqlvm.run.distribute`).
DISTRIBUTE = Registry("distribution strategy", [
    _entry("none", "one device (the default)"),
    _entry("mirrored", "tf.distribute.MirroredStrategy: the local GPUs, or "
           "--devices K logical CPU devices where there are none"),
    _entry("multi-worker", "tf.distribute.MultiWorkerMirroredStrategy: one "
           "process per host, configured by TF_CONFIG"),
])

# Which checkpoint `eval`, `sample` and `compare` use: "best" is the best
# validation bound's (RUN_DIR/best), "latest" the newest of RUN_DIR/ckpt;
# "auto" is best when the run has one; or a name "ckpt-N".
CHECKPOINTS = ("auto", "best", "latest")

# The four standard pianoroll sets (`seqlvm data fetch NAME`): the sets of
# its manifest, data/pianorolls.json (a test keeps the two the same; the
# command line does not read the manifest to parse its flags).
PIANOROLL_SETS = ("jsb", "nottingham", "musedata", "piano-midi")

# One pianoroll step per quarter, eighth or sixteenth note (MIDI import).
RESOLUTIONS = Registry("resolution", [
    _entry("quarter"), _entry("eighth"), _entry("sixteenth")])


def gradient_scheme_problem(gradient, scheme):
  """Why `gradient` cannot use `scheme` (no final period), or None.

  The one place of the rule "score and concrete need the multinomial
  scheme": the config, the command line and `seqlvm.bounds.fivo` ask here.
  """
  why = GRADIENTS.meta(gradient, "multinomial_only")
  SCHEMES.check(scheme)
  if why and scheme != "multinomial":
    return (f"the {gradient!r} resampling gradient needs the multinomial "
            f"scheme (got {scheme!r}): {why}")
  return None


def latent_problem(model, latent):
  """Why `model` cannot have a `latent` latent (no final period), or None."""
  LATENTS.check(latent)
  offered = MODELS.meta(model, "latents", ("gaussian",))
  if latent not in offered:
    takers = [m for m in MODELS if latent in MODELS.meta(m, "latents", ())]
    return (f"latent {latent} is only offered by models "
            f"{' and '.join(takers)} (got {model})")
  return None
