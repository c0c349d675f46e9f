"""Orbax checkpoints of the train state: periodic async saves (keep N newest) plus the best one.

The workdir's layout is rahf_jax.sharding.workdir_files's: checkpoints/<step>/state holds the
TrainState (sharded arrays, restored into the abstract state), checkpoints/<step>/meta the step,
data position (batches consumed), metrics and config; best/<step>/ the same for the best
checkpoint by `best_metric` (one kept). Inference reads the params alone
(rahf_jax.sharding.workdir_files.restore_params).

The data position is the number of train batches consumed, which equals the step: the input
pipeline is deterministic, so a resumed run asks it to start at that batch.
"""

import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp

from rahf_jax.sharding.workdir_files import (
  checkpoint_manager,
  jsonable,
  newest_readable,
)
from rahf_jax.train.state import TrainState


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
    self.periodic = checkpoint_manager(os.path.join(workdir, "checkpoints"), keep, async_save)
    self.best = (
      checkpoint_manager(os.path.join(workdir, "best"), 1, async_save) if best_metric else None
    )
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
    meta = jsonable({"step": step, "data_position": step, **(meta or {})})
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
    meta = jsonable(
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
    return newest_readable(sorted(manager.all_steps()), read, str(manager.directory))

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
