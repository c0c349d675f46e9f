"""Builds OUR model and train step for one benchmark configuration and times them.

Used by bench/bench_model.py; everything here is the project's own code path:
rahf_jax.models (get_model_config, build_model, predict_heads, greedy_decode, flops) and
rahf_jax.train (make_optimizer, init_state, make_train_step, make_synthetic_batch, the
logical rules). One device: a 1x1x1 (data, fsdp, model) mesh, "dp" rules.
"""

import time
from typing import Any

import bench_common as bc

RULES_NAME = "dp"  # Single device: pure data-parallel rules (everything replicated).


def _single_device_mesh():
  import jax

  from rahf_jax.sharding import partitioning

  return partitioning.make_mesh(data=1, fsdp=1, model=1, devices=jax.devices()[:1])


def _model_config(run: dict):
  """The model config of the run's size and variant, with `model_overrides` applied."""
  return bc.model_config(run["size"], run["variant"], run.get("model_overrides"))


def _train_config(run: dict):
  from rahf_jax.train.default_train_config import train_config_defaults

  config = train_config_defaults()
  config.model.size = run["size"]
  config.model.variant = run["variant"]
  config.batch_size = run["batch"]
  config.num_train_steps = 100_000  # schedule length is irrelevant to speed
  config.warmup_steps = 10
  config.data.prompt_len = run["prompt_len"]
  config.data.target_len = run["target_len"]
  config.logical_rules = RULES_NAME
  bc.set_fields(config, run.get("train_overrides") or {}, "train option {key} is not a field of "
                "the training config (rahf_jax/train/default_train_config.py).")  # fmt: skip
  return config


def _analytic_train_flops(model_config, prompt_len: int, target_len: int) -> float | None:
  """The model room's analytic FLOPs of one training example (None if it has no counter).

  Model FLOPs: the upsampling counted as the transposed conv's work whatever `upsample_impl`
  runs, so TFLOP/s and MFU compare the impls on the same work (XLA GFLOP/ex shows what ran).
  """
  try:
    from rahf_jax.models import flops as model_flops
  except ImportError:
    print("# rahf_jax.models.flops is missing: GFLOP/ex n/a, TFLOP/s and MFU from XLA's count")
    return None
  return float(
    model_flops.train_flops_per_example(
      model_config, prompt_len, target_len, upsample_impl="transpose"
    )
  )


def _compile(jitted, mesh, rules, *args):
  """(compiled, seconds): lower under the mesh and logical rules, then compile."""
  import flax.linen as nn
  import jax

  start = time.perf_counter()
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    lowered = jitted.lower(*args)
  compiled = lowered.compile()
  return compiled, time.perf_counter() - start


def measure(run: dict, on_partial=None) -> dict[str, Any]:
  """Every measured figure of one (size, variant, batch) configuration.

  `on_partial(figures)`, if given, is called with the figures so far after each part, so a
  run killed at its time limit still leaves what it measured.

  Train step: compile time, XLA FLOPs and planned bytes, median step time, peak device
  memory. Then, with the trained parameters: forward (heads + teacher-forced decoder), heads
  only, and greedy decoding, each as examples/s from the median call time.
  """
  import jax

  from rahf_jax import models
  from rahf_jax.sharding import abstract_params as abstract_params_lib
  from rahf_jax.sharding import mesh_context, partitioning
  from rahf_jax.train import optimizer, steps
  from rahf_jax.train import state as state_lib
  from rahf_jax.train.synthetic_batches import make_synthetic_batch

  out: dict[str, Any] = {}
  device = jax.devices()[0]
  mesh = _single_device_mesh()
  rules = partitioning.LOGICAL_AXIS_RULES[RULES_NAME]
  model_config = _model_config(run)
  train_config = _train_config(run)
  model = models.build_model(model_config)
  batch_size, prompt_len, target_len = run["batch"], run["prompt_len"], run["target_len"]

  # One synthetic row: its shapes and dtypes are all the abstract paths need.
  row = make_synthetic_batch(model_config, 1, prompt_len, target_len, run["seed"])
  out["train_flops_per_example"] = _analytic_train_flops(model_config, prompt_len, target_len)
  tx = optimizer.make_optimizer(train_config)
  # Init traced at batch 1: the state does not depend on the batch size, and the same init
  # program for every batch size hits the persistent compilation cache (run_gpu.sh sets one).
  init_shapes = {
    k: jax.ShapeDtypeStruct(row[k].shape, row[k].dtype) for k in abstract_params_lib.MODEL_INPUTS
  }
  if run["parts"] == ["lower"]:
    return _measure_lowered(model, tx, mesh, rules, init_shapes, row, train_config, run, out)

  host_batch = make_synthetic_batch(model_config, batch_size, prompt_len, target_len, run["seed"])
  batch = mesh_context.shard_batch(host_batch, mesh)
  state, shardings = state_lib.init_state(model, tx, mesh, rules, init_shapes, seed=run["seed"])
  out["params"] = state_lib.num_params(state.params)
  jax.block_until_ready(state)

  parts = run["parts"]
  if "train" in parts:
    train_step = steps.make_train_step(
      model,
      tx,
      variant=run["variant"],
      loss_weights=train_config.loss_weights,
      mesh=mesh,
      rules=rules,
      state_shardings=shardings,
    )
    compiled, out["compile_s"] = _compile(train_step.jitted, mesh, rules, state, batch)
    out["xla_train_flops"] = bc.xla_flops(compiled)
    out["plan_bytes"] = bc.xla_planned_bytes(compiled)

    holder = {"state": state}

    def one_step():
      holder["state"], metrics = compiled(holder["state"], batch)  # state is donated
      return holder["state"], metrics

    times = bc.time_calls(one_step, steps=run["steps"], warmup=run["warmup"])
    _, metrics = one_step()
    state = holder["state"]  # the newest state; every earlier one was donated
    out["train_loss"] = float(jax.device_get(metrics["loss"]))  # a finite loss: a real step
    out["step_s_all"] = times
    out["step_ms"] = 1e3 * bc.median(times)
    out["train_ex_s"] = batch_size / bc.median(times)
    out["peak_bytes"] = bc.peak_device_bytes(device)
    if on_partial:
      on_partial(dict(out))

  if "infer" in parts or "decode" in parts:
    _measure_inference(
      model, state.params, shardings.params, batch, mesh, rules, run, out, on_partial
    )
  return out


def _measure_lowered(model, tx, mesh, rules, init_shapes, row, train_config, run, out):
  """Parameter count and XLA's FLOPs of the lowered (not compiled) train step: no device work.

  Runs on any host in seconds to a minute, for configurations too big to run there; XLA counts
  the unoptimised program here (the compiled one's count can differ a little).
  """
  import flax.linen as nn
  import jax

  from rahf_jax.sharding import mesh_context
  from rahf_jax.train import state as state_lib
  from rahf_jax.train import steps

  abstract, shardings = state_lib.get_abstract_state(model, tx, mesh, rules, init_shapes)
  out["params"] = state_lib.num_params(abstract.params)
  bsharding = mesh_context.batch_sharding(mesh)
  batch = {
    k: jax.ShapeDtypeStruct((run["batch"],) + v.shape[1:], v.dtype, sharding=bsharding)
    for k, v in row.items()
  }
  train_step = steps.make_train_step(
    model,
    tx,
    variant=run["variant"],
    loss_weights=train_config.loss_weights,
    mesh=mesh,
    rules=rules,
    state_shardings=shardings,
  )
  start = time.perf_counter()
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    lowered = train_step.jitted.lower(abstract, batch)
  out["lower_s"] = time.perf_counter() - start
  out["xla_train_flops"] = bc.xla_flops(lowered)
  out["status"] = "ok (lowered only)"
  return out


def _measure_inference(model, params, param_shardings, batch, mesh, rules, run, out, on_partial):
  """Adds to `out` the examples/s of the forward pass, the heads alone and greedy decoding."""
  import jax

  from rahf_jax import models
  from rahf_jax.sharding import mesh_context

  bsharding = mesh_context.batch_sharding(mesh)
  image, prompt_ids = batch["image"], batch["prompt_ids"]
  batch_size = run["batch"]

  def timed(name, fn, *args):
    jitted = jax.jit(fn, in_shardings=(param_shardings,) + (bsharding,) * len(args))
    compiled, out[f"{name}_compile_s"] = _compile(jitted, mesh, rules, params, *args)
    times = bc.time_calls(lambda: compiled(params, *args), run["infer_steps"], run["warmup"])
    out[f"{name}_ms"] = 1e3 * bc.median(times)
    out[f"{name}_ex_s"] = batch_size / bc.median(times)
    if on_partial:
      on_partial(dict(out))

  if "infer" in run["parts"]:

    def forward(p, img, prompt, dec_in):
      return model.apply({"params": p}, img, prompt, dec_in, deterministic=True)

    timed("fwd", forward, image, prompt_ids, batch["decoder_input_ids"])

    def heads(p, img, prompt):
      return model.apply({"params": p}, img, prompt, method=model.predict_heads)

    timed("heads", heads, image, prompt_ids)

  if "decode" in run["parts"]:
    max_length = run["target_len"]

    def greedy(p, img, prompt):
      return models.greedy_decode(model, {"params": p}, img, prompt, max_length)

    timed("greedy", greedy, image, prompt_ids)
