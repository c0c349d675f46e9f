"""`train_and_evaluate(config, workdir)`: the training loop.

mesh -> model -> optimizer -> abstract state -> restore the newest checkpoint (or init) ->
train steps on this host's batches from the resume position -> metrics (TensorBoard +
console, a progress line with steps/s, examples/s and ETA) -> periodic checkpoints and dev
evaluation (loss terms + an optional `eval_fn` hook), the best checkpoint kept by a metric.
A NaN/Inf train loss stops the run with NonFiniteLossError; no checkpoint holds a non-finite
state (the loss is checked before every save).
"""

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import optax

from rahf_jax.models import build_model_from_config  # noqa: F401 (re-exported)
from rahf_jax.sharding import mesh_context
from rahf_jax.sharding.partitioning import make_mesh_and_rules  # noqa: F401 (re-exported)
from rahf_jax.sharding.workdir_files import config_to_dict, save_config
from rahf_jax.train import input_batches, losses, optimizer, steps
from rahf_jax.train.checkpointing import Checkpointer
from rahf_jax.train.init_weights import apply_pretrained
from rahf_jax.train.state import TrainState, get_abstract_state, make_init_fn, num_params
from rahf_jax.train.synthetic_batches import make_synthetic_batch

EvalFn = Callable[[TrainState, int], Mapping[str, float]]


class NonFiniteLossError(FloatingPointError):
  """The train loss became NaN or Inf; the message names the step and the last checkpoint."""


@dataclasses.dataclass
class TrainingSetup:
  """Everything built from a config before the first step (reused by eval/predict code)."""

  config: Any
  model_config: Any
  model: Any
  mesh: jax.sharding.Mesh
  rules: Any
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  abstract_state: TrainState
  state_shardings: TrainState
  example_batch: dict
  init_fn: Callable  # jitted seed key -> sharded TrainState (compiled once per setup)
  train_step: Callable
  eval_step: Callable


_SETUP_CACHE: dict[str, TrainingSetup] = {}


def setup_training(config) -> TrainingSetup:
  """Builds mesh, model, optimizer, abstract state and the jitted steps from a config.

  Memoised per process on the config's JSON, so a restarted `train_and_evaluate` in the same
  process (tests, notebooks) reuses the compiled steps.
  """
  key = json.dumps(config_to_dict(config), sort_keys=True)
  if key not in _SETUP_CACHE:
    _SETUP_CACHE.clear()  # hold at most one set of compiled steps
    _SETUP_CACHE[key] = build_setup(config)
  return _SETUP_CACHE[key]


def build_setup(config, devices=None) -> TrainingSetup:
  """`setup_training` without the memo, over `devices` (default: all; `rahf-jax plan` passes
  compile-only TPU devices). Nothing is compiled until a step is called or lowered."""
  mesh, rules = make_mesh_and_rules(config, devices)
  shards = mesh.shape["data"] * mesh.shape["fsdp"]
  for field in ("batch_size", "eval_batch_size"):
    if int(config[field]) % shards:
      raise ValueError(
        f"config.{field}={config[field]} is not divisible by the data*fsdp mesh size {shards}."
      )
  micro = num_microbatches_of(config, shards)
  heatmap_loss = losses.heatmap_loss_of(config)
  model_config, model = build_model_from_config(config)
  tx = optimizer.make_optimizer(config)
  schedule = optimizer.make_schedule(config)
  example = make_synthetic_batch(
    model_config, 1, config.data.prompt_len, config.data.target_len, seed=0
  )
  abstract_state, shardings = get_abstract_state(model, tx, mesh, rules, example)
  init_fn = jax.jit(make_init_fn(model, tx, example), out_shardings=shardings)
  common = dict(
    variant=config.model.variant,
    loss_weights=config.loss_weights.to_dict(),
    heatmap_loss=heatmap_loss,
    mesh=mesh,
    rules=rules,
    state_shardings=shardings,
  )
  accum = max(1, int(config.get("grad_accum_steps", 1)))
  train_step = steps.make_train_step(
    model, tx, schedule=schedule, grad_accum_steps=accum, num_microbatches=micro, **common
  )
  eval_step = steps.make_eval_step(model, **common)
  if config.get("compiled_train_step"):
    train_step = load_compiled_step(config.compiled_train_step)
  return TrainingSetup(
    config, model_config, model, mesh, rules, tx, schedule, abstract_state, shardings, example,
    init_fn, train_step, eval_step,
  )  # fmt: skip


def load_compiled_step(path: str) -> Callable:
  """A train step that `rahf-jax plan --save_executables` compiled, loaded without compiling.

  It must have been planned for these devices (the same topology) and this config; jax refuses
  arguments whose shardings differ from the ones it was compiled for.
  """
  import pickle  # noqa: PLC0415

  from jax.experimental import serialize_executable  # noqa: PLC0415

  if not os.path.exists(path):
    raise FileNotFoundError(
      f"config.compiled_train_step={path!r} does not exist; write it with `rahf-jax plan "
      "--topology ... --out DIR --save_executables` (DIR/train.executable)."
    )
  with open(path, "rb") as f:
    payload, in_tree, out_tree = pickle.load(f)
  return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)


def num_microbatches_of(config, batch_shards: int) -> int:
  """The config's `num_microbatches` (1 when absent), checked against its batch and mesh."""
  k = int(config.get("num_microbatches", 1))
  if k < 1 or int(config.batch_size) % (k * batch_shards):
    raise ValueError(
      f"config.num_microbatches={k} does not fit config.batch_size={config.batch_size}: the "
      f"batch must divide into num_microbatches x data x fsdp = {k} x {batch_shards} equal parts."
    )
  return k


def evaluate(setup: TrainingSetup, state: TrainState) -> dict[str, float]:
  """Dev loss terms over the eval batches: example-weighted means ("text_loss" token-weighted)."""
  sums: dict[str, float] = {}
  weights: dict[str, float] = {}
  for batch, ex_w in input_batches.eval_batches(setup.config, setup.model_config):
    aux, _ = setup.eval_step(
      state, mesh_context.shard_batch(batch, setup.mesh), _global(ex_w, setup)
    )
    aux = jax.device_get(aux)
    n, tokens = float(aux.pop("num_examples")), float(aux.pop("num_tokens"))
    for k, v in aux.items():
      w = tokens if k == "text_loss" else n
      sums[k] = sums.get(k, 0.0) + float(v) * w
      weights[k] = weights.get(k, 0.0) + w
  return {f"dev/{k}": sums[k] / max(weights[k], 1e-12) for k in sums}


def _global(example_weights: np.ndarray, setup: TrainingSetup) -> jax.Array:
  return jax.make_array_from_process_local_data(
    mesh_context.batch_sharding(setup.mesh), example_weights
  )


class _Progress:
  """Steps/s, examples/s and ETA between log points."""

  def __init__(self, start_step: int, total_steps: int, batch_size: int):
    self.total, self.batch_size = total_steps, batch_size
    self.t0, self.step0 = time.perf_counter(), start_step

  def __call__(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    rate = (step - self.step0) / max(now - self.t0, 1e-9)
    self.t0, self.step0 = now, step
    eta = (self.total - step) / rate if rate > 0 else float("inf")
    logging.info(
      "step %d/%d  %.2f steps/s  %.1f examples/s  ETA %s",
      step, self.total, rate, rate * self.batch_size, _hms(eta),
    )  # fmt: skip
    return {"steps_per_sec": rate, "examples_per_sec": rate * self.batch_size}


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  s = int(seconds)
  return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def train_and_evaluate(
  config, workdir: str, eval_fn: EvalFn | None = None, stop_at_step: int | None = None
) -> dict[str, Any]:
  """Trains (resuming from the newest checkpoint in workdir) and evaluates on dev.

  Args:
    config: a training config (rahf_jax/train/default_train_config.py plus model fields).
    workdir: checkpoints, config.json and TensorBoard events go here.
    eval_fn: optional hook eval_fn(state, step) -> {name: value}, called at every dev
      evaluation; its metrics are added under "dev/" (e.g. the paper's metrics).
    stop_at_step: stop (with a checkpoint) after this step although num_train_steps is larger,
      as if the job were pre-empted there; the schedule still spans num_train_steps.

  Returns:
    {"state": final TrainState, "train_losses": {step: loss} of checked steps,
     "eval": {step: dev metrics}, "start_step": resume step, "num_params": int}.

  Raises:
    NonFiniteLossError: the train loss became NaN/Inf (the last good checkpoint is kept).
  """
  from clu import metric_writers  # noqa: PLC0415 (tensorboard import is slow)

  if config.get("distributed", False):
    jax.distributed.initialize()
  setup = setup_training(config)
  save_config(config, workdir)
  ckpt = Checkpointer(
    workdir, int(config.keep_checkpoints), config.get("best_metric", ""), config.best_mode
  )
  meta = {"config": config_to_dict(config)}
  if ckpt.latest_step() is not None:
    state, restored_meta = ckpt.restore(setup.abstract_state)
    start = int(restored_meta["data_position"])
    logging.info("Resumed from step %d in %s", start, workdir)
  else:
    state = setup.init_fn(jax.random.PRNGKey(int(config.seed)))  # as state.init_state
    params = apply_pretrained(config, setup.model_config, state.params, setup.abstract_state.params)
    state = state.replace(params=params)
    start = 0
  total = int(config.num_train_steps)
  n_params = num_params(state.params)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start == 0:
    writer.write_hparams({"num_params": n_params, **_flat(config_to_dict(config))})
  logging.info("Model has %d parameters; training steps %d -> %d", n_params, start, total)

  batches = input_batches.train_batches(config, setup.model_config, start_batch=start)
  progress = _Progress(start, total, int(config.batch_size))
  result: dict[str, Any] = {"train_losses": {}, "eval": {}, "start_step": start}
  pending: list[dict] = []
  last_checked = start
  step = start

  def check_finite(metrics: dict, step: int) -> None:
    loss, grad_norm = (float(x) for x in jax.device_get((metrics["loss"], metrics["grad_norm"])))
    result["train_losses"][step] = loss
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
      loss = loss if not math.isfinite(loss) else f"{loss} (gradient norm {grad_norm})"
      ckpt.wait()
      good = ckpt.latest_step()
      writer.flush()
      raise NonFiniteLossError(
        f"Training stopped: the train loss is {loss} at step {step}. The last good checkpoint "
        f"is step {good} in {workdir}/checkpoints; lower learning_rate or check the data."
      )

  nan_every = max(1, int(config.get("nan_check_every", 1)))
  end = total if stop_at_step is None else min(total, int(stop_at_step))
  while step < end:
    batch = mesh_context.shard_batch(next(batches), setup.mesh)
    state, metrics = setup.train_step(state, batch)
    step += 1
    pending.append(metrics)
    save_now = step % int(config.checkpoint_every) == 0 or step in (total, end)
    eval_now = int(config.eval_every) > 0 and (step % int(config.eval_every) == 0 or step == total)
    if step % nan_every == 0 or save_now or eval_now:
      check_finite(metrics, step)
      last_checked = step
    if step % int(config.log_every) == 0 or step in (total, end):
      if last_checked != step:
        check_finite(metrics, step)
      means = {k: float(np.mean([m[k] for m in jax.device_get(pending)])) for k in pending[0]}
      pending.clear()
      writer.write_scalars(step, {f"train/{k}": v for k, v in means.items()} | progress(step))
    if save_now:
      ckpt.save(state, meta)
    if eval_now:
      dev = evaluate(setup, state)
      if eval_fn is not None:
        extra = eval_fn(state, step)
        dev.update({k if k.startswith("dev/") else f"dev/{k}": float(v) for k, v in extra.items()})
      writer.write_scalars(step, dev)
      result["eval"][step] = dev
      if config.get("best_metric", ""):
        ckpt.maybe_save_best(state, dev, meta)
  writer.close()
  ckpt.close()
  result.update(state=state, num_params=n_params)
  return result


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, Mapping):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
  return out
