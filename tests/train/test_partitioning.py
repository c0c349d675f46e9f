"""Mesh + logical rules: the sharded tiny forward and SGD step equal the unsharded ones (8 devices).

Exactness is checked in float64, where summation-order noise is ~1e-16 and a partitioning error
(a wrong reduction, a missing all-reduce) would still show at full size: on two x86 CPUs (Intel
Xeon, AMD EPYC) every output, loss and updated parameter of the three rule sets agreed with the
one-device run to <= 4e-15. float32 is not compared: the sharded program is the same one with
another element type, and its rounding hides a small error (an element of the SGD update whose
gradient is a near-cancelling sum keeps only the few significant bits that the summation order
decides: one such element differed by 6e-4 relative on an AMD EPYC while float64 agreed to 2e-16).

The model is the tiny size with one ViT layer and one T5 layer per stack (`_one_layer`): every
parameter kind and every logical axis the rules map is still there (layer 0 of each stack, all
heads), a second layer would only repeat them under the same rules, and each layer less is a
smaller step to compile for each mesh.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from host_params import init_shapes, random_like
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rahf_jax import features
from rahf_jax.models import build_model, get_model_config
from rahf_jax.sharding import abstract_params as abstract_params_lib
from rahf_jax.sharding import partitioning

FSDP_TP_MESH = (2, 2, 2)  # data, fsdp, model


def test_make_mesh_sizes_and_errors():
  mesh = partitioning.make_mesh(data=-1, fsdp=2, model=2)
  assert mesh.axis_names == ("data", "fsdp", "model") and mesh.devices.shape == (2, 2, 2)
  assert partitioning.make_mesh().devices.shape == (8, 1, 1)
  with pytest.raises(ValueError, match="device"):
    partitioning.make_mesh(data=3, fsdp=1, model=1)
  with pytest.raises(ValueError, match="at most one"):
    partitioning.make_mesh(data=-1, fsdp=-1)


# Each output is at most ~10 layers deep, each a sum of <= 9 * 64 products, so its rounding
# error is bounded by about depth * sqrt(terms) * eps = 10 * 24 * 2.2e-16 ~ 5e-14 of the output's
# scale (the leaf's max |value|). A partitioning error is O(1) of it.
_RTOL = 256 * float(np.finfo(np.float64).eps)


@pytest.fixture(scope="module")
def tiny():
  with jax.enable_x64(True):
    yield _tiny_setup()


def _one_layer(c):
  """The model config `c` with one ViT layer and one T5 encoder and decoder layer."""
  c.vit.depth = 1
  c.t5.num_encoder_layers = c.t5.num_decoder_layers = 1
  return c


def _tiny_setup():
  """The float64 model, random params, specs, a batch and the unsharded step's results."""
  c = _one_layer(get_model_config("test", features.MULTI_HEAD))
  c.dtype = c.param_dtype = "float64"
  model = build_model(c)
  rs = np.random.RandomState(0)
  b = 8
  batch = dict(
    image=jnp.asarray(rs.uniform(-1, 1, (b, c.image_size, c.image_size, 3)), jnp.float64),
    prompt_ids=jnp.asarray(np.where(np.arange(8) < 5, rs.randint(2, 512, (b, 8)), 0), jnp.int32),
    decoder_input_ids=jnp.asarray(rs.randint(0, 512, (b, 6)), jnp.int32),
  )
  args = (batch["image"], batch["prompt_ids"], batch["decoder_input_ids"])
  specs = partitioning.param_logical_specs(model, *args)["params"]
  # Any values do (both steps compute on the same ones); made on the host, no init to compile.
  params = jax.tree.map(jnp.asarray, random_like(init_shapes(model.init, *args)))
  reference = jax.jit(_step_fn(model))(params, batch)  # unsharded, computed once
  return model, params, specs, batch, reference


def _step_fn(model):
  def loss(params, batch):
    out = model.apply(
      {"params": params}, batch["image"], batch["prompt_ids"], batch["decoder_input_ids"]
    )
    return sum(jnp.mean(x**2) for x in jax.tree.leaves(out)), out

  def step(params, batch):
    (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params, batch)
    return value, out, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)

  return step


@pytest.mark.slow
def test_expected_parameter_shardings(tiny):
  specs = tiny[2]
  mesh = partitioning.make_mesh(*FSDP_TP_MESH)
  sh = partitioning.logical_shardings(specs, mesh, partitioning.LOGICAL_AXIS_RULES["fsdp_tp"])
  enc = sh["encoder"]["layers_0"]
  assert enc["mlp"]["wi"]["kernel"].spec == P("fsdp", "model")
  assert enc["attention"]["query"]["kernel"].spec == P("fsdp", "model", None)
  assert sh["token_embedder"]["embedding"].spec == P("model", "fsdp")
  vit_block = sh["vit"]["Transformer"]["encoderblock_0"]
  assert vit_block["MlpBlock_0"]["Dense_1"]["kernel"].spec == P("model", "fsdp")
  head = sh["heatmap_heads_implausibility"]
  # Conv kernels: FSDP on input channels only (see the rules' docstring on why not also `model`).
  assert head["pre_conv_0"]["kernel"].spec == P(None, None, "fsdp", None)
  assert head["up_0_deconv"]["kernel"].spec == P(None, None, None, "fsdp")
  assert sh["score_heads_overall"]["dense_0"]["kernel"].spec == P("fsdp", "model")
  assert head["out_conv"]["kernel"].spec == P(None, None, "fsdp", None)
  dp = partitioning.logical_shardings(specs, mesh, partitioning.LOGICAL_AXIS_RULES["dp"])
  assert all(s.spec == P(*([None] * len(s.spec))) for s in jax.tree.leaves(dp))


def test_indivisible_dimensions_are_replicated():
  mesh = partitioning.make_mesh(data=1, fsdp=8, model=1)
  leaf = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  shardings = {
    "odd": NamedSharding(mesh, P(None, None, "fsdp", None)),
    "even": NamedSharding(mesh, P(None, None, "fsdp", None)),
    "batch": NamedSharding(mesh, P(("data", "fsdp"))),
  }
  abstract = {"odd": leaf(3, 3, 12, 4), "even": leaf(3, 3, 16, 4), "batch": leaf(4)}
  fitted = partitioning.divisible_shardings(shardings, abstract)
  assert fitted["odd"].spec == P(None, None, None, None)
  assert fitted["even"].spec == P(None, None, "fsdp", None)
  assert fitted["batch"].spec == P(None)


@pytest.mark.slow
def test_state_with_channels_the_fsdp_axis_does_not_divide():
  """A score-head conv with 12 input channels on an fsdp axis of 8: the params still build on
  their shardings, that kernel replicated, the others sharded (before, jax refused the init)."""
  from rahf_jax.train.synthetic_batches import make_synthetic_batch  # noqa: PLC0415

  c = _one_layer(get_model_config("test", features.MULTI_HEAD))
  c.score_head.convs = (32, 12, 8)
  model = build_model(c)
  mesh = partitioning.make_mesh(data=1, fsdp=8, model=1)
  batch = make_synthetic_batch(c, 8, 8, 8, seed=0)
  _, shardings = abstract_params_lib.abstract_params(
    model, mesh, partitioning.LOGICAL_AXIS_RULES["fsdp"], batch
  )
  head = shardings["score_heads_overall"]
  assert head["conv_1"]["kernel"].spec == P(None, None, "fsdp", None)  # 32 input channels
  assert head["conv_2"]["kernel"].spec == P(None, None, None, None)  # 12: replicated
  shapes = abstract_params_lib.input_shapes(batch)
  init = jax.jit(
    lambda k: nn.unbox(abstract_params_lib.init_variables(model, k, shapes)["params"]),
    out_shardings=shardings,
  )
  params = init(jax.random.key(0))
  assert params["score_heads_overall"]["conv_2"]["kernel"].shape == (3, 3, 12, 8)


def _assert_close_to_scale(got, want, rtol, what):
  """|got - want| <= rtol * scale, scale = max(max|want| over the leaf, 1).

  The floor of 1 covers leaves that are pure rounding noise: the ViT key bias has a zero gradient
  (softmax ignores a per-key constant), so after one step it holds values of ~1e-19.
  """
  got, want = np.asarray(got), np.asarray(want)
  assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
  err, scale = float(np.max(np.abs(got - want))), max(float(np.max(np.abs(want))), 1.0)
  assert err <= rtol * scale, (what, err, scale)


@pytest.mark.slow
def test_sharded_step_equals_unsharded(tiny):
  """Under fsdp_tp on (data 2, fsdp 2, model 2): the rule set that uses all three mesh axes at
  once, the batch split over two of them and the kernels over two. The dp and fsdp rule sets are
  checked with the real train step, in float64 against one device, in tests/train/test_steps.py
  (its loss terms and gradient norm at each of 3 steps and every parameter after them)."""
  model, params, specs, batch, (ref_value, ref_out, ref_params) = tiny
  step = _step_fn(model)

  mesh = partitioning.make_mesh(*FSDP_TP_MESH)
  rules = partitioning.LOGICAL_AXIS_RULES["fsdp_tp"]
  param_sh = partitioning.logical_shardings(specs, mesh, rules)
  batch_sh = NamedSharding(mesh, P(("data", "fsdp")))
  sharded_params = jax.device_put(params, param_sh)
  sharded_batch = jax.device_put(batch, batch_sh)
  with nn.logical_axis_rules(rules), jax.set_mesh(mesh):
    value, out, new_params = jax.jit(
      step, in_shardings=(param_sh, batch_sh), out_shardings=(None, None, param_sh)
    )(sharded_params, sharded_batch)
  _assert_close_to_scale(value, ref_value, _RTOL, "loss")
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(out), jax.tree.leaves(ref_out), strict=True
  ):
    _assert_close_to_scale(a, b, _RTOL, jax.tree_util.keystr(path))
  # The updated parameters, element by element (an update computed wrongly would be off by
  # O(|update|) ~ 1e-3 of the parameters' scale).
  for (path, a), b in zip(
    jax.tree_util.tree_leaves_with_path(new_params), jax.tree.leaves(ref_params), strict=True
  ):
    _assert_close_to_scale(a, b, _RTOL, jax.tree_util.keystr(path))
  # Parameters land where the rules say.
  for leaf, want in zip(jax.tree.leaves(new_params), jax.tree.leaves(param_sh), strict=True):
    assert leaf.sharding.is_equivalent_to(want, leaf.ndim)
