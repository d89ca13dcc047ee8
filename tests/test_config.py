"""The run configuration: validation, the rules between fields, JSON."""

import json

import pytest

from seqlvm import config as config_lib
from seqlvm.config import Config
from seqlvm.errors import ConfigError


def test_defaults_are_valid_and_round_trip(tmp_path):
  config = Config()
  path = tmp_path / "config.json"
  config_lib.save_config(config, str(path))
  assert config_lib.load_config(str(path)) == config


@pytest.mark.parametrize("changes, message", [
    (dict(model="transformer"), "model must be one of"),
    (dict(scheme="fancy"), "scheme must be one of"),
    (dict(num_particles=0), "num_particles must be >= 1"),
    (dict(threshold=1.5), r"threshold must be in \(0, 1\]"),
    (dict(hidden_size="64"), "hidden_size must be int"),
    (dict(jit_compile=1), "jit_compile must be bool"),
    (dict(precision="int8"), "precision must be one of"),
    (dict(precision="float16"), "precision must be one of"),  # no loss scale
    (dict(resampling_gradient="score", scheme="systematic"),
     "needs the multinomial scheme"),
    (dict(model="srnn", latent="concrete"),
     "only offered by models vrnn and vrnn-wavenet"),
    (dict(kl_warmup_steps=-1), "kl_warmup_steps must be >= 0"),
    (dict(kl_weight_start=1.5), r"kl_weight_start must be in \[0, 1\]"),
])
def test_invalid_values_are_named(changes, message):
  with pytest.raises(ConfigError, match=message):
    Config(**changes)


def test_from_dict_refuses_unknown_and_missing_fields():
  values = Config().to_dict()
  with pytest.raises(ConfigError, match=r"x.json: unknown fields \['colour'\]"):
    Config.from_dict({**values, "colour": "red"}, source="x.json")
  del values["bound"]
  with pytest.raises(ConfigError, match="incomplete config: bound missing"):
    Config.from_dict(values, source="x.json")
  # Fields added later take what the code did before them: their defaults,
  # except the validation's sweeps and samples, which older runs never did.
  values = Config().to_dict()
  for name in config_lib.ADDED_FIELDS:
    del values[name]
  assert Config.from_dict(values) == Config(valid_variance_sweeps=0,
                                            valid_samples=0)


def test_load_config_names_the_file(tmp_path):
  with pytest.raises(ConfigError, match="no config here"):
    config_lib.load_config(str(tmp_path / "config.json"))
  (tmp_path / "config.json").write_text("[1, 2]")
  with pytest.raises(ConfigError, match="expected a JSON object"):
    config_lib.load_config(str(tmp_path / "config.json"))
  (tmp_path / "config.json").write_text("{")
  with pytest.raises(ConfigError, match="unreadable config"):
    config_lib.load_config(str(tmp_path / "config.json"))


def test_ignored_fields_name_the_setting_they_need():
  config = Config(bound="iwae")
  ignored = dict(config_lib.ignored_fields(
      config, {"resampling", "scheme", "num_particles"}))
  assert ignored == {"resampling": "--bound fivo",
                     "scheme": "--bound fivo with --resampling ess or always"}
  # A FIVO-trained proposal resamples with them too.
  assert not config_lib.ignored_fields(
      Config(bound="iwae", proposal_bound="fivo"), {"resampling", "scheme"})
  config = Config(model="wavenet")
  assert [f for f, _ in config_lib.ignored_fields(
      config, {"hidden_size", "wavenet_layers"})] == ["hidden_size"]
  assert json.dumps(config.to_dict())  # JSON-serialisable
  # The KL warm-up: its start needs a warm-up, and a warm-up needs latents.
  assert dict(config_lib.ignored_fields(Config(), {"kl_weight_start"})) == {
      "kl_weight_start": "--kl-warmup-steps > 0"}
  assert [f for f, _ in config_lib.ignored_fields(
      Config(model="wavenet", kl_warmup_steps=10),
      {"kl_warmup_steps"})] == ["kl_warmup_steps"]
  assert not config_lib.ignored_fields(
      Config(kl_warmup_steps=10), {"kl_warmup_steps", "kl_weight_start"})
