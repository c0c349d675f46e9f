"""Orbax checkpoints: periodic async saves (keep N newest) plus the best one by a metric.

Layout under the workdir:

  config.json               the run's config (written once, also stored in every checkpoint)
  checkpoints/<step>/state  the TrainState (sharded arrays; restored into the abstract state)
  checkpoints/<step>/meta   JSON: step, data position (batches consumed), metrics, config
  best/<step>/...           the same for the best checkpoint by `best_metric` (one kept)

A params-only checkpoint (a converted model, `save_params`) has the same layout with
`state = {"params": ...}`. `restore_params` reads only the params of either kind (inference
needs no optimizer state: a third of a TrainState's memory under Adam).

The data position is the number of train batches consumed, which equals the step: the input
pipeline is deterministic, so a resumed run asks it to start at that batch.
"""

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rahf_jax.train.state import TrainState

_ITEMS = ("state", "meta")


def _jsonable(x: Any) -> Any:
  if isinstance(x, Mapping):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, list | tuple):
    return [_jsonable(v) for v in x]
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
  return _jsonable(dict(config)) if config is not None else {}


def save_config(config: Any, workdir: str) -> str:
  """Writes workdir/config.json (host 0 only) and returns its path."""
  path = os.path.join(workdir, "config.json")
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(config_to_dict(config), f, indent=2, sort_keys=True)
  return path


def _manager(directory: str, max_to_keep: int | None, async_save: bool):
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=_ITEMS)


class Checkpointer:
  """Periodic and best checkpoints of one workdir.

  Args:
    workdir: the run directory.
    keep: number of newest periodic checkpoints kept.
    best_metric: metric name that picks the best checkpoint ("" disables it).
    best_mode: "min" or "max".
    async_save: orbax async saves (the device->host copy blocks, the write does not).
  """

  def __init__(
    self,
    workdir: str,
    keep: int = 3,
    best_metric: str = "",
    best_mode: str = "min",
    async_save: bool = True,
  ):
    if best_mode not in ("min", "max"):
      raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}.")
    self.workdir = workdir
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.periodic = _manager(os.path.join(workdir, "checkpoints"), keep, async_save)
    self.best = _manager(os.path.join(workdir, "best"), 1, async_save) if best_metric else None
    self.best_value: float | None = None
    if self.best is not None and self.best.latest_step() is not None:
      step = self.best.latest_step()
      meta = self.best.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      self.best_value = meta["meta"].get("best_value")

  def latest_step(self) -> int | None:
    """Newest periodic checkpoint's step, or None."""
    return self.periodic.latest_step()

  def save(self, state: TrainState, meta: Mapping[str, Any] | None = None) -> int:
    """Saves a periodic checkpoint at the state's step (async); returns the step."""
    step = int(jax.device_get(state.step))
    if step in self.periodic.all_steps():
      return step
    meta = _jsonable({"step": step, "data_position": step, **(meta or {})})
    self.periodic.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      force=True,
    )
    return step

  def is_better(self, value: float) -> bool:
    """Whether `value` of best_metric beats the best so far."""
    if value is None or not math.isfinite(value):
      return False
    if self.best_value is None:
      return True
    return value < self.best_value if self.best_mode == "min" else value > self.best_value

  def maybe_save_best(
    self, state: TrainState, metrics: Mapping[str, Any], meta: Mapping[str, Any] | None = None
  ) -> bool:
    """Saves `state` as the best checkpoint if metrics[best_metric] improved; returns whether."""
    if self.best is None:
      return False
    if self.best_metric not in metrics:
      raise ValueError(
        f"best_metric {self.best_metric!r} is not among the eval metrics "
        f"{sorted(metrics)}; set config.best_metric to one of them (or '' to disable)."
      )
    value = float(metrics[self.best_metric])
    if not self.is_better(value):
      return False
    self.best_value = value
    step = int(jax.device_get(state.step))
    meta = _jsonable(
      {
        "step": step,
        "data_position": step,
        "best_metric": self.best_metric,
        "best_value": value,
        "metrics": dict(metrics),
        **(meta or {}),
      }
    )
    self.best.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      force=True,
    )
    logging.info("New best checkpoint at step %d: %s = %.6g", step, self.best_metric, value)
    return True

  def restore(
    self, abstract_state: TrainState, step: int | None = None, best: bool = False
  ) -> tuple[TrainState, dict]:
    """Restores (state, meta) into the sharded abstract state; newest step by default."""
    manager = self.best if best else self.periodic
    if manager is None:
      raise ValueError("No best checkpoint is kept (config.best_metric is empty).")
    if step is None and manager.latest_step() is None:
      raise FileNotFoundError(
        f"No checkpoint in {manager.directory}; train first (rahf-jax train --workdir ...)."
      )

    def read(s):
      restored = manager.restore(
        s,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
        ),
      )
      return restored["state"], dict(restored["meta"])

    if step is not None:
      return read(step)
    return _newest_readable(sorted(manager.all_steps()), read, str(manager.directory))

  def wait(self) -> None:
    """Blocks until pending async saves are written."""
    self.periodic.wait_until_finished()
    if self.best is not None:
      self.best.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the managers."""
    self.wait()
    self.periodic.close()
    if self.best is not None:
      self.best.close()


def _steps_dir(workdir: str, best: bool) -> str:
  return os.path.join(os.path.abspath(workdir), "best" if best else "checkpoints")


def checkpoint_steps(workdir: str, best: bool = False) -> list[int]:
  """The steps of the finished checkpoints in workdir/checkpoints (or best/), ascending."""
  directory = _steps_dir(workdir, best)
  if not os.path.isdir(directory):
    return []
  return sorted(
    int(name)
    for name in os.listdir(directory)
    if name.isdigit() and os.path.isdir(os.path.join(directory, name, "state"))
  )


def save_params(workdir: str, params: Any, step: int = 0, meta: Mapping[str, Any] | None = None):
  """Writes a params-only checkpoint (`state = {"params": params}`) at workdir/checkpoints/step."""
  manager = _manager(os.path.join(workdir, "checkpoints"), None, async_save=False)
  meta = _jsonable({"step": step, "data_position": step, "params_only": True, **(meta or {})})
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
    where = _steps_dir(workdir, best)
    raise FileNotFoundError(
      f"No checkpoint in {where}; train first (rahf-jax train --workdir ...) or convert one "
      "(rahf-jax convert)."
    )
  if step is not None and int(step) not in steps:
    raise FileNotFoundError(f"No checkpoint of step {step} in {_steps_dir(workdir, best)}.")
  target = {"params": abstract_params}

  def read(s):
    restored = ocp.PyTreeCheckpointer().restore(
      os.path.join(_steps_dir(workdir, best), str(s), "state"),
      args=ocp.args.PyTreeRestore(
        target,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True,
      ),
    )
    return restored["params"], s

  if step is not None:
    return read(int(step))
  return _newest_readable(steps, read, _steps_dir(workdir, best))


def _newest_readable(steps: list[int], read, where: str):
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
