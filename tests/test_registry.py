"""The registries: every name loads, the CLI offers exactly the registered
names, the rules are written once, and none of it imports TensorFlow."""

import inspect
import subprocess
import sys

import pytest

from seqlvm import config as config_lib
from seqlvm import registry
from seqlvm.errors import ConfigError


@pytest.mark.parametrize("reg", [registry.MODELS, registry.BOUNDS,
                                 registry.CRITERIA, registry.SCHEMES,
                                 registry.GRADIENTS])
def test_every_registered_name_loads(reg):
  for name in reg:
    target = reg.load(name)
    assert callable(target), (reg.concept, name)


def test_models_take_the_arguments_the_factory_gives():
  for name in registry.MODELS:
    accepted = set(inspect.signature(registry.MODELS.load(name)).parameters)
    assert {"data_size", "emission", "data_mean", "seed"} <= accepted, name
    # Every size the config has for this model reaches it.
    if registry.MODELS.meta(name, "has_latents"):
      assert "hidden_size" in accepted, name
    if registry.MODELS.meta(name, "wavenet"):
      assert {"channels", "dilations"} <= accepted, name
    if "concrete" in registry.MODELS.meta(name, "latents"):
      assert {"latent", "categories", "temperature"} <= accepted, name


def test_unknown_names_list_the_choices():
  with pytest.raises(ConfigError, match="Unknown resampling scheme 'x'; "
                     "choose one of multinomial, systematic, stratified, "
                     "residual."):
    registry.SCHEMES.check("x")
  with pytest.raises(ConfigError, match="Unknown model"):
    registry.MODELS["transformer"]  # pylint: disable=pointless-statement


def test_build_passes_only_declared_options():
  soft = registry.GRADIENTS.build("soft", soft_mixing=0.25,
                                  resampling_temperature=3.)
  assert soft.mixing == 0.25
  concrete = registry.GRADIENTS.build("concrete", soft_mixing=0.25,
                                      resampling_temperature=3.)
  assert concrete.temperature == 3.
  assert registry.GRADIENTS.build("stop", soft_mixing=0.25).name == "stop"


def test_the_multinomial_rule_is_one_function_used_everywhere():
  from seqlvm import bounds  # pylint: disable=g-import-not-at-top
  refused = {(g, s) for g in ("score", "concrete")
             for s in ("systematic", "stratified", "residual")}
  for gradient in registry.GRADIENTS:
    for scheme in registry.SCHEMES:
      problem = registry.gradient_scheme_problem(gradient, scheme)
      assert bool(problem) == ((gradient, scheme) in refused)
      if problem:
        with pytest.raises(ConfigError, match="needs the multinomial"):
          config_lib.Config(bound="fivo", resampling_gradient=gradient,
                            scheme=scheme)
        with pytest.raises(ConfigError, match="needs the multinomial"):
          bounds.bound_spec("fivo", resampling_gradient=gradient,
                            scheme=scheme)


def test_latent_rule():
  assert registry.latent_problem("vrnn", "concrete") is None
  assert "only offered by models vrnn and vrnn-wavenet" in (
      registry.latent_problem("srnn", "concrete"))


# The command line's choices before the registries existed: they must not
# change (a new entry is added here on purpose).
_CHOICES = [
    ("--model", registry.MODELS,
     ("vrnn", "srnn", "draw", "vrnn-wavenet", "wavenet")),
    ("--bound", registry.BOUNDS, ("elbo", "iwae", "fivo")),
    ("--resampling", registry.CRITERIA, ("ess", "always", "never")),
    ("--scheme", registry.SCHEMES,
     ("multinomial", "systematic", "stratified", "residual")),
    ("--resampling-gradient", registry.GRADIENTS,
     ("stop", "score", "soft", "concrete")),
    ("--latent", registry.LATENTS, ("gaussian", "concrete")),
    ("--on-nonfinite", registry.ON_NONFINITE, ("stop", "skip")),
]


@pytest.mark.parametrize("flag, reg, names", _CHOICES)
def test_cli_offers_exactly_the_registered_names(flag, reg, names, capsys):
  from seqlvm import cli  # pylint: disable=g-import-not-at-top
  assert reg.names == names
  parser = cli.build_parser()
  dest = flag[2:].replace("-", "_")
  for name in reg:
    args = parser.parse_args(["train", "--run-dir", "r", flag, name])
    assert getattr(args, dest) == name
  with pytest.raises(SystemExit):
    parser.parse_args(["train", "--run-dir", "r", flag, "not-registered"])
  assert f"choose from {', '.join(map(repr, reg.names))}" in (
      capsys.readouterr().err.replace("\n", " "))


def test_parsing_and_help_import_no_tensorflow():
  code = ("import sys, contextlib, io\n"
          "from seqlvm import cli\n"
          "for argv in (['--help'], ['train', '--help'], ['data', 'fetch', "
          "'--help'], ['train', '--modle', 'x']):\n"
          "  with contextlib.redirect_stdout(io.StringIO()), "
          "contextlib.redirect_stderr(io.StringIO()):\n"
          "    try:\n"
          "      cli.build_parser().parse_args(argv)\n"
          "    except SystemExit:\n"
          "      pass\n"
          "import seqlvm\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tensorflow_probability', 'tf_keras')))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == "[]", out


def test_help_in_a_fresh_process_takes_under_a_few_seconds():
  # Measured about 0.2 s on the 2-core machine; 3 s leaves room for load.
  import time  # pylint: disable=g-import-not-at-top
  for argv in (["--help"], ["compare", "--help"], ["--version"]):
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "seqlvm.cli", *argv],
                          capture_output=True, text=True, check=True)
    assert time.time() - start < 3, argv
    assert done.stdout.startswith(("usage: seqlvm", "seqlvm "))
