"""Orbax checkpoints: keep-N, restore into a sharded abstract state, best by metric, errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rahf_jax.sharding import partitioning
from rahf_jax.sharding.workdir_files import save_config
from rahf_jax.train.checkpointing import Checkpointer
from rahf_jax.train.default_train_config import train_config_defaults
from rahf_jax.train.state import TrainState


def _state(step: int, mesh) -> tuple[TrainState, TrainState]:
  params = {"w": jnp.arange(32.0).reshape(8, 4) + step, "b": jnp.full((4,), float(step))}
  tx = optax.adam(1e-3)
  s = TrainState(
    step=jnp.asarray(step, jnp.int32), params=params, opt_state=tx.init(params),
    rng=jax.random.PRNGKey(step),
  )  # fmt: skip
  rep = NamedSharding(mesh, P())
  shard = {"w": NamedSharding(mesh, P("fsdp", None)), "b": rep}
  opt = optax.tree_map_params(tx, lambda _, sh: sh, s.opt_state, shard,
                              transform_non_params=lambda _: rep,
                              is_leaf=lambda x: isinstance(x, NamedSharding))  # fmt: skip
  shardings = TrainState(step=rep, params=shard, opt_state=opt, rng=rep)
  return jax.device_put(s, shardings), shardings


def _abstract(shardings, like):
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), like,
                      shardings)  # fmt: skip


def test_keep_n_and_restore_into_sharded_abstract_state(tmp_path):
  mesh = partitioning.make_mesh(data=1, fsdp=-1)
  ckpt = Checkpointer(str(tmp_path), keep=2)
  assert ckpt.latest_step() is None
  for step in range(1, 5):
    s, shardings = _state(step, mesh)
    ckpt.save(s, {"note": "x"})
  ckpt.wait()
  assert ckpt.periodic.all_steps() == [3, 4]
  ckpt.close()

  again = Checkpointer(str(tmp_path), keep=2)
  restored, meta = again.restore(_abstract(shardings, s))
  assert meta["step"] == meta["data_position"] == 4 and meta["note"] == "x"
  assert restored.params["w"].sharding.is_equivalent_to(shardings.params["w"], 2)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(s), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(np.asarray(restored.params["w"]), np.arange(32.0).reshape(8, 4) + 4)

  # Restoring an older step into a replicated layout also works.
  rep = NamedSharding(mesh, P())
  old, _ = again.restore(_abstract(jax.tree.map(lambda _: rep, shardings), s), step=3)
  np.testing.assert_array_equal(np.asarray(old.params["b"]), np.full((4,), 3.0))
  again.close()


def test_best_checkpoint_by_metric_survives_restart(tmp_path):
  mesh = partitioning.make_mesh(data=-1)
  ckpt = Checkpointer(str(tmp_path), keep=1, best_metric="dev/loss", best_mode="min")
  saved = []
  for step, value in ((1, 3.0), (2, 2.0), (3, 2.5), (4, float("nan"))):
    s, shardings = _state(step, mesh)
    saved.append(ckpt.maybe_save_best(s, {"dev/loss": value}))
  assert saved == [True, True, False, False]
  with pytest.raises(ValueError, match="best_metric 'dev/loss' is not among"):
    ckpt.maybe_save_best(s, {"dev/other": 1.0})
  ckpt.close()

  again = Checkpointer(str(tmp_path), keep=1, best_metric="dev/loss", best_mode="min")
  assert again.best_value == 2.0
  assert not again.is_better(2.1) and again.is_better(1.9)
  best, meta = again.restore(_abstract(shardings, s), best=True)
  assert meta["step"] == 2 and meta["best_value"] == 2.0
  np.testing.assert_array_equal(np.asarray(best.params["b"]), np.full((4,), 2.0))
  again.close()

  maxed = Checkpointer(str(tmp_path / "max"), best_metric="dev/plcc", best_mode="max")
  assert maxed.is_better(0.1)
  maxed.best_value = 0.5
  assert maxed.is_better(0.6) and not maxed.is_better(0.4)
  maxed.close()


def test_errors_and_config_json(tmp_path):
  mesh = partitioning.make_mesh(data=-1)
  s, shardings = _state(0, mesh)
  with pytest.raises(FileNotFoundError, match="No checkpoint in"):
    Checkpointer(str(tmp_path / "empty")).restore(_abstract(shardings, s))
  with pytest.raises(ValueError, match="best_mode"):
    Checkpointer(str(tmp_path / "bad"), best_mode="lowest")
  config = train_config_defaults()
  config.learning_rate = 0.125
  path = save_config(config, str(tmp_path / "run"))
  with open(path) as f:
    written = json.load(f)
  assert written["learning_rate"] == 0.125 and written["mesh"]["data"] == -1
  assert os.path.basename(path) == "config.json"
