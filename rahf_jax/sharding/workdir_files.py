"""A workdir on disk, as training writes it and inference reads it.

  config.json               the run's config
  checkpoints/<step>/state  a TrainState (rahf_jax.train.checkpointing) or params only
  checkpoints/<step>/meta   JSON: step, data position, metrics, config
  best/<step>/...           the same for the best checkpoint by a metric (one kept)

A params-only checkpoint (a converted model, `save_params`) has the same layout with
`state = {"params": ...}`. `restore_params` reads only the params of either kind, straight into
sharded abstract params (rahf_jax.sharding.abstract_params): inference needs no optimizer state,
a third of a TrainState's memory under Adam.
"""

import functools
import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ("state", "meta")  # what each checkpoint folder holds


def jsonable(x: Any) -> Any:
  if isinstance(x, Mapping):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, list | tuple):
    return [jsonable(v) for v in x]
  if isinstance(x, np.ndarray | jax.Array | np.generic):
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x.tolist()
  if isinstance(x, float) and not math.isfinite(x):
    return str(x)
  if isinstance(x, str | int | float | bool) or x is None:
    return x
  return str(x)


def config_to_dict(config: Any) -> dict:
  """A JSON-safe dict of an ml_collections.ConfigDict (or any mapping)."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return jsonable(dict(config)) if config is not None else {}


def save_config(config: Any, workdir: str) -> str:
  """Writes workdir/config.json (host 0 only) and returns its path."""
  path = os.path.join(workdir, "config.json")
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(config_to_dict(config), f, indent=2, sort_keys=True)
  return path


@functools.cache  # one registration per process
def _save_whole_arrays_on_cpu() -> None:
  """On the CPU backend, orbax writes each array from one device, not split across its replicas.

  Orbax's default (replica-parallel saving, for TPU hosts) cuts every replicated array into one
  slice per device with a jitted slice, compiled per shape and device: 224 compiles for the
  small test model's first checkpoint on 8 CPU devices, about 10 s of a 2-core machine, for
  devices that share one host's memory. The files are the same either way.
  """
  if jax.default_backend() == "cpu":
    ocp.type_handlers.register_type_handler(
      jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True
    )


def checkpoint_manager(directory: str, max_to_keep: int | None, async_save: bool):
  _save_whole_arrays_on_cpu()
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=ITEMS)


def steps_dir(workdir: str, best: bool) -> str:
  return os.path.join(os.path.abspath(workdir), "best" if best else "checkpoints")


def checkpoint_steps(workdir: str, best: bool = False) -> list[int]:
  """The steps of the finished checkpoints in workdir/checkpoints (or best/), ascending."""
  directory = steps_dir(workdir, best)
  if not os.path.isdir(directory):
    return []
  return sorted(
    int(name)
    for name in os.listdir(directory)
    if name.isdigit() and os.path.isdir(os.path.join(directory, name, "state"))
  )


def save_params(workdir: str, params: Any, step: int = 0, meta: Mapping[str, Any] | None = None):
  """Writes a params-only checkpoint (`state = {"params": params}`) at workdir/checkpoints/step."""
  manager = checkpoint_manager(os.path.join(workdir, "checkpoints"), None, async_save=False)
  meta = jsonable({"step": step, "data_position": step, "params_only": True, **(meta or {})})
  manager.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave({"params": params}), meta=ocp.args.JsonSave(meta)
    ),
    force=True,
  )
  manager.wait_until_finished()
  manager.close()


def restore_params(
  workdir: str, abstract_params: Any, step: int | None = None, best: bool = False
) -> tuple[Any, int]:
  """(params restored into the sharded abstract params, step): newest step by default.

  Reads only the parameters of a TrainState or params-only checkpoint.
  """
  steps = checkpoint_steps(workdir, best)
  if step is None and not steps:
    where = steps_dir(workdir, best)
    raise FileNotFoundError(
      f"No checkpoint in {where}; train first (rahf-jax train --workdir ...) or convert one "
      "(rahf-jax convert)."
    )
  if step is not None and int(step) not in steps:
    raise FileNotFoundError(f"No checkpoint of step {step} in {steps_dir(workdir, best)}.")
  target = {"params": abstract_params}

  def read(s):
    restored = ocp.PyTreeCheckpointer().restore(
      os.path.join(steps_dir(workdir, best), str(s), "state"),
      args=ocp.args.PyTreeRestore(
        target,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True,
      ),
    )
    return restored["params"], s

  if step is not None:
    return read(int(step))
  return newest_readable(steps, read, steps_dir(workdir, best))


def newest_readable(steps: list[int], read, where: str):
  """`read(step)` of the newest step that reads; a damaged newest one is skipped with a warning.

  (orbax finalises a checkpoint by renaming its folder, so a save killed mid-write never shows
  as a step; this covers files damaged after that, e.g. a truncated or lost array file.)
  """
  errors = []
  for step in reversed(steps):
    try:
      return read(step)
    except Exception as e:  # pylint: disable=broad-except  # any unreadable file or metadata
      errors.append(f"step {step}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
      logging.warning("Checkpoint of step %d in %s cannot be read (%s); trying the one before.",
                      step, where, errors[-1])  # fmt: skip
  raise ValueError(f"No readable checkpoint in {where}: {'; '.join(errors)}.")
