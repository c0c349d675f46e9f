"""The t5x route's mark bias, without t5x: MARK_BIAS from a number or a calibration record
(rahf_jax.t5x.run_settings.mark_bias) and the parameters of a t5x checkpoint that
rahf_jax.t5x.calibrate chooses one for (read with orbax, matched by their digest).

tests/t5x/test_t5x_adapter.py (needs t5x) checks that the gin files bind the bias and that
RAHFModel decodes with it.
"""

import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rahf_jax.inference.mark_bias import params_digest
from rahf_jax.t5x import run_settings
from rahf_jax.t5x.calibrate import restore_t5x_params


def test_mark_bias_from_a_value_a_record_or_none(tmp_path):
  record = {"mark_bias": 2.5, "checkpoint": {"kind": "best", "step": 1500, "params_digest": "ab"}}
  (tmp_path / "mark_bias.json").write_text(json.dumps(record))
  assert run_settings.mark_bias() == 0.0
  assert run_settings.mark_bias(record=str(tmp_path)) == 2.5  # a native workdir
  assert run_settings.mark_bias(record=str(tmp_path / "mark_bias.json")) == 2.5
  assert run_settings.mark_bias(value=1.0, record=str(tmp_path)) == 1.0
  with pytest.raises(FileNotFoundError, match="MARK_BIAS_RECORD"):
    run_settings.mark_bias(record=str(tmp_path / "elsewhere"))
  (tmp_path / "bad.json").write_text('{"checkpoint": {}}')
  with pytest.raises(ValueError, match="not a mark-bias record"):
    run_settings.mark_bias(record=str(tmp_path / "bad.json"))


def test_t5x_checkpoint_params_are_restored_as_saved_and_a_wrong_model_is_refused(tmp_path):
  """A checkpoint in t5x's layout (checkpoint_<step>/state: {"target": params, "state": ...}):
  the params come back equal, with their step and the digest of the saved tree."""
  rng = np.random.default_rng(0)
  params = {"vit": {"kernel": rng.normal(size=(3, 4)).astype(np.float32)},
            "head": {"bias": rng.normal(size=(5,)).astype(np.float32)}}  # fmt: skip
  checkpoint = tmp_path / "model" / "checkpoint_7"
  ocp.PyTreeCheckpointer().save(
    str(checkpoint / "state"), {"target": params, "state": {"step": np.int32(7)}}
  )
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                          params)  # fmt: skip
  restored, step = restore_t5x_params(str(checkpoint), abstract)
  assert step == 7
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(params), strict=True):
    np.testing.assert_array_equal(a, b)
  assert params_digest(restored) == params_digest(params)
  wrong = {**abstract, "head": {"bias": jax.ShapeDtypeStruct((6,), np.float32)}}
  with pytest.raises(ValueError, match="another model"):
    restore_t5x_params(str(checkpoint), wrong)
  with pytest.raises(FileNotFoundError, match="checkpoint_<step>"):
    restore_t5x_params(str(tmp_path / "model"), abstract)
