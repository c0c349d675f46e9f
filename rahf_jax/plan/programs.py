"""A run config's steps, compiled ahead of time for a target's devices (nothing initialised or run).

  train   the train step as `rahf-jax train` runs it (rahf_jax.train.loop.build_setup: the
          config's mesh, rules, optimizer, microbatches), on config.batch_size examples
  eval    the dev-evaluation step (loss terms and outputs), on config.eval_batch_size examples
  score   the heads alone (scores and heatmaps, no decoder), as the Scorer and `rahf-jax score`
          run them, on config.eval_batch_size examples

Each is lowered from abstract arguments (ShapeDtypeStructs with the steps' shardings) and
compiled by the target's compiler: XLA:TPU for compile-only TPU devices, XLA:CPU for CPU
devices. Model FLOPs are the analytic counts of rahf_jax.models.flops for the step's batch.

XLA's cost analysis counts a loop's body once, so a train step with k microbatches reports
about 1/k of its FLOPs and bytes. `loop_scale` corrects for it: the ratio of the counts of the
one-pass and the microbatched step as lowered for one CPU device (before partitioning and
optimisation; lowering takes seconds where compiling takes minutes), which is k times the loop's
share.
"""

import dataclasses
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rahf_jax.models import flops as model_flops
from rahf_jax.sharding import mesh_context
from rahf_jax.train import loop

STEPS = ("train", "eval", "score")


@dataclasses.dataclass
class CompiledStep:
  """One compiled step and what it was compiled from."""

  name: str
  batch_size: int
  compiled: Any  # jax.stages.Compiled; None when the compiler ran out of the device's memory
  lower_s: float
  compile_s: float
  model_flops: float  # analytic FLOPs of one call on the whole batch
  loop_scale: dict | None = None  # {"flops", "bytes accessed"}: count factors for the loop
  out_of_memory: str | None = None  # the compiler's message when it refused the step for memory
  # Per-device counts where the compiler gives none (XLA:GPU): XLA's cost analysis of the whole
  # batch's program lowered for one CPU device, split evenly over the devices.
  lowered_cost: dict | None = None


def _abstract_batch(example: dict, batch_size: int, sharding) -> dict:
  return {
    k: jax.ShapeDtypeStruct((batch_size,) + v.shape[1:], v.dtype, sharding=sharding)
    for k, v in example.items()
  }


def make_score_step(model, mesh, rules, param_shardings):
  """Jitted (params, image, prompt_ids) -> heads' outputs, sharded like the train step."""
  bsharding = mesh_context.batch_sharding(mesh)

  def score(params, image, prompt_ids):
    return model.apply({"params": params}, image, prompt_ids, method=model.predict_heads)

  jitted = jax.jit(
    score, in_shardings=(param_shardings, bsharding, bsharding), out_shardings=bsharding
  )
  return mesh_context.with_mesh_context(jitted, mesh, rules)


def _step_calls(setup, names):
  """name -> (step function, abstract arguments, batch size, model FLOPs)."""
  config, mc = setup.config, setup.model_config
  lp, lt = int(config.data.prompt_len), int(config.data.target_len)
  breakdown = model_flops.forward_flops_breakdown(mc, lp, lt)
  forward = sum(breakdown.values())
  bsharding = mesh_context.batch_sharding(setup.mesh)
  train_b, eval_b = int(config.batch_size), int(config.eval_batch_size)
  calls = {}
  for name in names:
    if name == "train":
      batch = _abstract_batch(setup.example_batch, train_b, bsharding)
      calls[name] = (setup.train_step, (setup.abstract_state, batch), train_b,
                     model_flops.train_flops_per_example(mc, lp, lt) * train_b)  # fmt: skip
    elif name == "eval":
      batch = _abstract_batch(setup.example_batch, eval_b, bsharding)
      weights = jax.ShapeDtypeStruct((eval_b,), jnp.float32, sharding=bsharding)
      calls[name] = (setup.eval_step, (setup.abstract_state, batch, weights), eval_b,
                     forward * eval_b)  # fmt: skip
    elif name == "score":
      step = make_score_step(setup.model, setup.mesh, setup.rules, setup.state_shardings.params)
      batch = _abstract_batch(setup.example_batch, eval_b, bsharding)
      args = (setup.abstract_state.params, batch["image"], batch["prompt_ids"])
      calls[name] = (step, args, eval_b, (forward - breakdown["decoder"]) * eval_b)
    else:
      raise ValueError(f"--steps: {name!r} is not a step; use some of {', '.join(STEPS)}.")
  return calls


def _lower(setup, step, args):
  with jax.set_mesh(setup.mesh), nn.logical_axis_rules(setup.rules):
    return step.jitted.lower(*args)


def _one_cpu_device_counts(config, name: str) -> dict:
  """XLA's cost analysis of step `name` of the whole batch, lowered for one CPU device: what
  the loop scale compares, and the counts of a backend whose compiler gives none (XLA:GPU)."""
  setup = loop.build_setup(config, jax.devices("cpu")[:1])
  step, args, _, _ = _step_calls(setup, [name])[name]
  return dict(_lower(setup, step, args).cost_analysis() or {})


def _loop_scale(config) -> dict:
  """Count factors of a microbatched train step: one pass's counts over the loop's, as lowered.

  Both are lowered for one CPU device (XLA:TPU's compile-only client has no cost analysis of a
  lowered program; the ratio does not depend on the mesh).
  """
  one_pass = config.copy_and_resolve_references()
  one_pass.num_microbatches = 1
  whole, looped = (_one_cpu_device_counts(c, "train") for c in (one_pass, config))
  return {key: float(whole[key]) / float(looped[key]) for key in ("flops", "bytes accessed")}


def compiled_counts(compiled) -> dict:
  """XLA's cost analysis of a compiled program as a dict ({} where the backend gives none)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, list | tuple):
    analysis = analysis[0] if analysis else {}
  return dict(analysis or {})


def compile_steps(config, devices, names=STEPS):
  """(setup, [CompiledStep]) of the config's steps `names`, compiled for `devices`."""
  setup = loop.build_setup(config, devices)
  compiled_steps = []
  for name, (step, args, batch_size, flops) in _step_calls(setup, names).items():
    start = time.perf_counter()
    lowered = _lower(setup, step, args)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    out_of_memory = None
    try:
      compiled = lowered.compile()
    except Exception as e:  # noqa: BLE001 - XLA:TPU refuses a program that overflows HBM
      if "RESOURCE_EXHAUSTED" not in str(e):
        raise
      compiled, out_of_memory = None, str(e).strip().splitlines()[0]
    compile_s = time.perf_counter() - start
    scale = None
    if compiled is not None and name == "train" and int(config.get("num_microbatches", 1)) > 1:
      scale = _loop_scale(config)
    lowered_cost = None
    if compiled is not None and not compiled_counts(compiled).get("flops"):
      whole = _one_cpu_device_counts(config, name)
      lowered_cost = {
        k: float(v) / len(devices) for k, v in whole.items() if k != "optimal_seconds"
      }
    compiled_steps.append(
      CompiledStep(
        name, batch_size, compiled, lower_s, compile_s, flops, scale, out_of_memory, lowered_cost
      )
    )
  return setup, compiled_steps
