"""Device mesh and logical-axis rules: logical names on parameters -> `NamedSharding`s.

Mesh axes are ("data", "fsdp", "model"). The models name every parameter axis logically (t5x names:
batch, length, embed, mlp, heads, kv, vocab; plus relpos_buckets, vit_embed, conv_height,
conv_width, conv_in, conv_out, score_in, score_out, and for activations grid_h, grid_w, channels).
A rule set maps each logical name to a mesh axis (or None = replicated); names without a rule are
replicated. Three rule sets:
  dp       pure data parallel: the batch over data x fsdp, every parameter replicated.
  fsdp     as dp, plus parameters sharded over `fsdp` on their embed / conv_in / score_in axis.
  fsdp_tp  as fsdp, plus tensor parallelism over `model` (mlp, heads, vocab, score_out).
           The conv heads stay FSDP-only: with a conv kernel sharded on both its input (fsdp)
           and output (model) channels and the batch on (data, fsdp), XLA's CPU SPMD partitioner
           (jax 0.10.2) returned wrong input gradients in our tests; one sharded channel axis
           per kernel is exact.

Typical use (the training loop builds its abstract state on these):
  mesh = make_mesh(data=-1, fsdp=1, model=1)
  specs = param_logical_specs(model, rngs, image, prompt_ids, decoder_input_ids)
  shardings = logical_shardings(specs, mesh, LOGICAL_AXIS_RULES["fsdp"])
  params = jax.jit(init_fn, out_shardings=shardings)(...)
Activation constraints inside the model take effect when the step is traced under
`nn.logical_axis_rules(rules)` and `jax.set_mesh(mesh)`; otherwise they are no-ops.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "model")
_BATCH = ("batch", ("data", "fsdp"))
_UNSHARDED = (
  ("length", None),
  ("kv", None),
  ("relpos_buckets", None),
  ("conv_height", None),
  ("conv_width", None),
  ("grid_h", None),
  ("grid_w", None),
)
LOGICAL_AXIS_RULES: dict[str, tuple[tuple[str, object], ...]] = {
  "dp": (_BATCH,)
  + _UNSHARDED
  + (
    ("embed", None),
    ("vit_embed", None),
    ("mlp", None),
    ("heads", None),
    ("vocab", None),
    ("conv_in", None),
    ("conv_out", None),
    ("channels", None),
    ("score_in", None),
    ("score_out", None),
  ),
  "fsdp": (_BATCH,)
  + _UNSHARDED
  + (
    ("embed", "fsdp"),
    ("vit_embed", "fsdp"),
    ("mlp", None),
    ("heads", None),
    ("vocab", None),
    ("conv_in", "fsdp"),
    ("conv_out", None),
    ("channels", None),
    ("score_in", "fsdp"),
    ("score_out", None),
  ),
  "fsdp_tp": (_BATCH,)
  + _UNSHARDED
  + (
    ("embed", "fsdp"),
    ("vit_embed", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("vocab", "model"),
    ("conv_in", "fsdp"),
    ("conv_out", None),
    ("channels", None),
    ("score_in", "fsdp"),
    ("score_out", "model"),
  ),
}


def make_mesh(
  data: int = -1, fsdp: int = 1, model: int = 1, devices: Sequence[jax.Device] | None = None
) -> jax.sharding.Mesh:
  """A ("data", "fsdp", "model") mesh over `devices` (default: all); one size may be -1 (fill)."""
  devices = list(jax.devices() if devices is None else devices)
  sizes = [data, fsdp, model]
  if sizes.count(-1) > 1:
    raise ValueError(f"mesh sizes {sizes}: at most one of data/fsdp/model may be -1.")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(
        f"{len(devices)} devices do not divide into mesh sizes {sizes}; "
        "pick sizes whose product divides the device count."
      )
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(
      f"mesh sizes {sizes} need {int(np.prod(sizes))} devices but "
      f"{len(devices)} are given; make data*fsdp*model equal the device count."
    )
  try:
    arr = mesh_utils.create_device_mesh(sizes, devices)
  except Exception:  # noqa: BLE001 - fake CPU devices / unusual topologies: plain order.
    arr = np.asarray(devices).reshape(sizes)
  return jax.sharding.Mesh(arr, MESH_AXES)


def make_mesh_and_rules(config, devices: Sequence[jax.Device] | None = None):
  """The device mesh of a run config (config.mesh, -1 = fill) over `devices` (default: all)
  and its named logical rules."""
  name = config.logical_rules
  if name not in LOGICAL_AXIS_RULES:
    raise ValueError(
      f"Unknown config.logical_rules {name!r}; use one of {sorted(LOGICAL_AXIS_RULES)}."
    )
  mesh = make_mesh(
    data=int(config.mesh.data),
    fsdp=int(config.mesh.fsdp),
    model=int(config.mesh.model),
    devices=devices,
  )
  return mesh, LOGICAL_AXIS_RULES[name]


def logical_shardings(logical_spec_tree, mesh: jax.sharding.Mesh, rules):
  """Tree of logical `PartitionSpec`s -> tree of `NamedSharding`s on `mesh` under `rules`."""
  return nn.logical_to_mesh_sharding(logical_spec_tree, mesh, tuple(rules))


def divisible_shardings(shardings, abstract):
  """`shardings` with every dimension left unsharded whose size its mesh axes do not divide.

  The logical rules shard by name; a few small parameters (the score heads' last convs have 48
  and 96 input channels) are not divisible by a large fsdp axis (32, 64), which jax refuses.
  Such a dimension is replicated instead; every other dimension keeps its sharding.
  """

  def fit(sharding, leaf):
    mesh, spec = (
      sharding.mesh,
      tuple(sharding.spec) + (None,) * (len(leaf.shape) - len(sharding.spec)),
    )
    fitted = []
    for size, axes in zip(leaf.shape, spec, strict=True):
      names = (axes,) if isinstance(axes, str) else tuple(axes or ())
      ways = math.prod(mesh.shape[a] for a in names)
      fitted.append(axes if size % ways == 0 else None)
    return NamedSharding(mesh, PartitionSpec(*fitted))

  return jax.tree.map(fit, shardings, abstract)


def param_logical_specs(model: nn.Module, *init_args, rngs=None, **init_kwargs):
  """Logical `PartitionSpec` tree of `model.init(rngs, *init_args)`'s variables (no compute).

  Uses `jax.eval_shape`, so it is cheap for the big configs. `rngs` defaults to
  {"params": key(0), "dropout": key(1)}.
  """
  if rngs is None:
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  abstract = jax.eval_shape(lambda r, *a: model.init(r, *a, **init_kwargs), rngs, *init_args)
  return nn.get_partition_spec(abstract)


def abstract_variables(model: nn.Module, *init_args, rngs=None, **init_kwargs):
  """Shapes/dtypes (`ShapeDtypeStruct`s, boxes removed) of `model.init(rngs, *init_args)`."""
  if rngs is None:
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  abstract = jax.eval_shape(lambda r, *a: model.init(r, *a, **init_kwargs), rngs, *init_args)
  return nn.unbox(abstract)
