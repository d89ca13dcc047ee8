"""Checkpoints of the format before the architecture restructure restore.

experiments/golden.json records, for every model of experiments/golden.py,
the variables of a checkpoint written by the code before the restructure
(names and shapes: what `tf.train.Checkpoint` matches on restore). The same
models built now must write exactly those variables. Regenerate the file
only for an intended change of format (see experiments/golden.py).
"""

import importlib.util
import json
import os

import pytest
import tensorflow as tf

from tests.conftest import REPO

_GOLDEN = os.path.join(REPO, "experiments", "golden.py")
_spec = importlib.util.spec_from_file_location("golden", _GOLDEN)
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

with open(os.path.join(REPO, "experiments", "golden.json")) as f:
  RECORDED = json.load(f)


@pytest.mark.parametrize("name", sorted(golden.golden_models()))
def test_checkpoint_variables_are_those_of_the_recorded_format(name,
                                                               tmp_path):
  model, _ = golden.golden_models()[name]
  prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  variables = sorted(
      f"{key} {shape}" for key, shape in tf.train.list_variables(prefix)
      if "_CHECKPOINTABLE_OBJECT_GRAPH" not in key)
  assert variables == RECORDED[f"{name}/checkpoint_variables"]


def test_values_restore_into_a_model_built_afresh(tmp_path):
  # Write with one model, restore into a fresh one: every value arrives.
  built = golden.golden_models()
  model, _ = built["vrnn-wavenet/gaussian"]
  for v in model.trainable_variables:
    v.assign(v + 1.)
  prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  fresh, _ = golden.golden_models()["vrnn-wavenet/gaussian"]
  tf.train.Checkpoint(model=fresh).read(prefix).assert_existing_objects_matched()
  for a, b in zip(model.trainable_variables, fresh.trainable_variables):
    assert (a.numpy() == b.numpy()).all()
