"""The mark-bias record: used for the parameters it was chosen on (step and digest), whichever
checkpoint folder holds them; the digest; the choice of the best bias; the default checkpoint."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from rahf_jax.evaluation.mark_calibration import choose_mark_bias
from rahf_jax.inference.mark_bias import (
  MARK_BIAS_FILE,
  params_digest,
  read_mark_bias,
  write_mark_bias,
)
from rahf_jax.inference.predictor import use_best


def _record(step, digest):
  return {"mark_bias": 2.5, "checkpoint": {"kind": "best", "step": step, "params_digest": digest}}


def test_the_record_applies_to_its_parameters_only(tmp_path, caplog):
  workdir = str(tmp_path)
  assert read_mark_bias(workdir, 100, "abc") == 0.0  # no record: no bias, no warning
  write_mark_bias(workdir, _record(100, "abc"))
  assert read_mark_bias(workdir, 100, "abc") == 2.5  # best or newest folder: the same params
  with caplog.at_level(logging.WARNING):
    assert read_mark_bias(workdir, 200, "abc") == 0.0
    assert read_mark_bias(workdir, 100, "abd") == 0.0  # other parameters of the same step
  assert sum("run `rahf-jax calibrate` on this" in r.message for r in caplog.records) == 2


def test_a_record_without_a_digest_applies_to_its_step(tmp_path):
  write_mark_bias(str(tmp_path), {"mark_bias": 3.0, "checkpoint": {"kind": "best", "step": 7}})
  assert read_mark_bias(str(tmp_path), 7, "anything") == 3.0
  assert read_mark_bias(str(tmp_path), 8, "anything") == 0.0


def test_an_unreadable_record_means_no_bias(tmp_path, caplog):
  (tmp_path / MARK_BIAS_FILE).write_text("{not json")
  with caplog.at_level(logging.WARNING):
    assert read_mark_bias(str(tmp_path), 1, "x") == 0.0
  assert "unreadable" in caplog.text
  (tmp_path / MARK_BIAS_FILE).write_text(json.dumps({"mark_bias": 1.0}))  # no checkpoint
  assert read_mark_bias(str(tmp_path), 1, "x") == 0.0


def _tree(seed=0):
  rng = np.random.default_rng(seed)
  return {
    "dense": {"kernel": rng.normal(size=(16, 8)).astype(np.float32),
              "bias": rng.normal(size=(8,)).astype(np.float32)},
    "embed": jnp.asarray(rng.normal(size=(32, 8)), jnp.bfloat16),
  }  # fmt: skip


def test_the_digest_follows_the_values_not_the_placement():
  tree = _tree()
  digest = params_digest(tree)
  assert params_digest(_tree()) == digest and len(digest) == 24
  mesh = jax.make_mesh((len(jax.devices()),), ("data",))
  sharded = jax.tree.map(
    lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec("data"))), tree
  )
  assert params_digest(sharded) == digest  # restored into shards: the same digest
  one_ulp = jax.tree.map(np.copy, tree)
  k = one_ulp["dense"]["kernel"]
  k[3, 5] = np.nextafter(k[3, 5], np.float32(np.inf))
  assert params_digest(one_ulp) != digest
  swapped = dict(
    tree, dense={"kernel": tree["dense"]["kernel"][::-1], "bias": tree["dense"]["bias"]}
  )
  assert params_digest(swapped) != digest  # the same values in another order
  assert params_digest(_tree(seed=1)) != digest


def _fake_checkpoint(workdir, folder, step):
  (workdir / folder / str(step) / "state").mkdir(parents=True)


def test_by_default_the_best_checkpoint_where_the_run_keeps_one(tmp_path):
  _fake_checkpoint(tmp_path, "checkpoints", 20)
  assert use_best(str(tmp_path), None) is False  # no best kept: the newest
  _fake_checkpoint(tmp_path, "best", 10)
  assert use_best(str(tmp_path), None) is True
  assert use_best(str(tmp_path), False) is False and use_best(str(tmp_path), True) is True


def test_the_best_f1_wins_and_a_tie_goes_to_the_smaller_bias():
  by_bias = {0.0: {"f1": 0.1}, 1.0: {"f1": 0.4}, 2.0: {"f1": 0.4}, 3.0: {"f1": 0.3}}
  assert choose_mark_bias(by_bias) == 1.0
  assert choose_mark_bias({0.0: {"f1": None}, 0.5: {"f1": 0.0}}) == 0.0
