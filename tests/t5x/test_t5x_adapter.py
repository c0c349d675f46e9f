"""The t5x adapter (rahf_jax.t5x.models) and the gin configs; skipped where t5x is absent.

Only here is the adapter itself (`RAHFModel`: its loss_fn, predict_batch_with_aux, score_batch,
initial variables, t5x's partitioner and `t5x.train`) checked against the native train step and
modules. Without t5x, tests/t5x/test_run_settings.py checks the settings and the loss function
the adapter is built from against the native step, not the adapter.

Reference values come from rahf_jax's own modules called directly (the adapter must only
adapt them) and from numpy; the sharded checks run t5x's PjitPartitioner on the 8 fake CPU
devices of tests/conftest.py with the logical rules declared in configs/t5x/models/rahf.gin.
"""

import copy
import glob
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

# A submodule: under pytest, tests/t5x itself would satisfy a plain `import t5x`.
pytest.importorskip(
  "t5x.models",
  reason="t5x is not installed: the t5x adapter (RAHFModel) is not checked against the native "
  "train step (README.md, section t5x, installs it)",
)

import flax  # noqa: E402
import flax.linen as nn  # noqa: E402
import gin  # noqa: E402
import jax  # noqa: E402
import scipy.special  # noqa: E402
from flax.linen import partitioning as flax_partitioning  # noqa: E402
from t5x import partitioning  # noqa: E402
from t5x import train_state as train_state_lib  # noqa: E402
from t5x import utils as t5x_utils  # noqa: E402

from rahf_jax import features as F  # noqa: E402
from rahf_jax.inference import postprocess, prompt_copy  # noqa: E402
from rahf_jax.inference.tokenizer import load_tokenizer  # noqa: E402
from rahf_jax.models import build_model_from_config, constrained_decode, greedy_decode  # noqa: E402
from rahf_jax.train import losses  # noqa: E402
from rahf_jax.train import optimizer as rahf_optimizer  # noqa: E402
from rahf_jax.train.loop import setup_training  # noqa: E402
from rahf_jax.train.synthetic_batches import make_synthetic_batch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_FILES = sorted(glob.glob(os.path.join(REPO, "configs/t5x/models/*_*.gin")))
B, LP, LT = 8, 8, 6


def _parse(model_file, bindings=()):
  """(RAHFModel, extra logical rules) from one of our gin model files."""
  gin.clear_config()
  gin.add_config_file_search_path(REPO)
  gin.parse_config_files_and_bindings([model_file], list(bindings))
  model = gin.query_parameter("%MODEL").scoped_configurable_fn()
  rules = gin.query_parameter("partitioning.standard_logical_axis_rules.additional_rules")
  gin.clear_config()
  return model, rules


def _resolve(value):
  """A gin macro's value: a configurable reference is called (as gin does when it binds it)."""
  return value.scoped_configurable_fn() if hasattr(value, "scoped_configurable_fn") else value


def _parse_run(model_file, run_file, bindings=()):
  """{macro: value} of a model file + run file pair, as t5x.train would parse them."""
  import t5x.train  # noqa: F401,PLC0415  (registers t5x's run-script configurables)

  gin.clear_config()
  gin.add_config_file_search_path(REPO)
  gin.add_config_file_search_path(os.path.dirname(os.path.dirname(t5x_utils.__file__)))
  sys_main = sys.modules["__main__"]
  had_train = hasattr(sys_main, "train")
  if not had_train:
    sys_main.train = t5x.train.train
  try:
    gin.parse_config_files_and_bindings(
      [model_file, run_file], ['MODEL_DIR = "/tmp/unused"', *bindings]
    )
    names = ("TRAIN_STEPS", "BATCH_SIZE", "DROPOUT_RATE", "TASK_FEATURE_LENGTHS", "RANDOM_SEED")
    values = {n: _resolve(gin.query_parameter(f"%{n}")) for n in names}
    values["MODEL"] = _resolve(gin.query_parameter("%MODEL"))
    values["MIXTURE_OR_TASK_MODULE"] = gin.query_parameter("%MIXTURE_OR_TASK_MODULE")
  finally:
    gin.clear_config()
    if not had_train:
      del sys_main.train
  return values


@pytest.fixture(scope="module", params=F.VARIANTS)
def tiny(request):
  # float32 (the tiny size computes in bfloat16): the checks below compare against references
  # computed separately, to float32 rounding.
  return _parse(
    os.path.join(REPO, f"configs/t5x/models/tiny_{request.param}.gin"),
    ["MODEL_OVERRIDES = {'dtype': 'float32'}"],
  )


def _batch(model, seed=0):
  rng = np.random.default_rng(seed)
  c = model.config
  hs = c.heatmap_size
  batch = {
    "image": rng.uniform(-1, 1, (B, c.image_size, c.image_size, 3)).astype(np.float32),
    "prompt_ids": rng.integers(3, c.vocab_size, (B, LP)).astype(np.int32),
    "decoder_target_ids": rng.integers(3, c.vocab_size, (B, LT)).astype(np.int32),
  }
  batch["prompt_ids"][:, -2:] = F.PAD_ID
  batch["decoder_target_ids"][:, -1] = F.EOS_ID
  weights = np.ones((B, LT), np.float32)
  weights[0, 3:] = 0
  batch["decoder_loss_weights"] = weights
  batch["decoder_input_ids"] = np.concatenate(
    [np.zeros((B, 1), np.int32), batch["decoder_target_ids"][:, :-1]], axis=1
  )
  if model.variant == F.MULTI_HEAD:
    for h in F.HEATMAP_TYPES:
      batch[f"heatmap_{h}"] = rng.uniform(0, 1, (B, hs, hs)).astype(np.float32)
    for s in F.SCORE_TYPES:
      batch[f"score_{s}"] = rng.uniform(0, 1, (B,)).astype(np.float32)
  else:
    batch["output_type"] = (np.arange(B) % len(F.AUGMENTED_OUTPUT_TYPES)).astype(np.int32)
    batch["heatmap"] = rng.uniform(0, 1, (B, hs, hs)).astype(np.float32)
    batch["score"] = rng.uniform(0, 1, (B,)).astype(np.float32)
  return batch


def _init(model, batch):
  shapes = {k: v.shape for k, v in batch.items()}
  return model.get_initial_variables(jax.random.PRNGKey(0), shapes)


def test_every_model_file_builds_its_size_and_variant():
  assert len(MODEL_FILES) == 6
  for path in MODEL_FILES:
    model, rules = _parse(path)
    size, variant = os.path.basename(path)[:-4].split("_")
    assert model.variant == variant
    assert model.config.size.lower().startswith(size)
    assert dict(rules)["conv_out"] is None


def test_initial_variables_carry_every_logical_axis(tiny):
  model, _ = tiny
  batch = _batch(model)
  variables = _init(model, batch)
  boxed = model.module.init(
    jax.random.PRNGKey(0), batch["image"], batch["prompt_ids"], batch["decoder_input_ids"]
  )["params"]
  expected = jax.tree_util.tree_leaves(
    jax.tree_util.tree_map(
      lambda b: b.names, boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned)
    ),
    is_leaf=lambda x: isinstance(x, tuple),
  )
  names = flax_partitioning.get_axis_names(variables["params_axes"])
  got = jax.tree_util.tree_leaves(
    names, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
  )
  assert [tuple(p) for p in got] == [tuple(n) for n in expected]
  shapes = [x.shape for x in jax.tree_util.tree_leaves(variables["params"])]
  assert shapes == [
    x.value.shape
    for x in jax.tree_util.tree_leaves(boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  ]


def _native_config(arg, **fields):
  spec = importlib.util.spec_from_file_location("native_rahf_config", f"{REPO}/configs/rahf.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  for key, value in fields.items():
    config[key] = value
  return config


@pytest.mark.parametrize("variant", F.VARIANTS)
def test_gin_run_resolves_the_native_config(t5x_data_dir, variant, monkeypatch):
  """tiny_<variant>.gin + runs/finetune.gin: the model, optimizer and t5x macros are
  configs/rahf.py:tiny,<variant>'s; macros given on the command line reach model and schedule."""
  monkeypatch.setenv("RAHF_DATA_DIR", t5x_data_dir)
  model_file = os.path.join(REPO, f"configs/t5x/models/tiny_{variant}.gin")
  run_file = os.path.join(REPO, "configs/t5x/runs/finetune.gin")
  native = _native_config(f"tiny,{variant}")
  values = _parse_run(model_file, run_file)
  model = values.pop("MODEL")
  assert model.train_config.to_dict() == native.to_dict()
  assert model.loss_weights == {"heatmap": 30.0, "score": 5.0, "text": 1.0}
  assert model.heatmap_loss == "bce"
  assert values == {
    "TRAIN_STEPS": native.num_train_steps,
    "BATCH_SIZE": native.batch_size,
    "DROPOUT_RATE": 0.0,
    "TASK_FEATURE_LENGTHS": {"inputs": 32, "targets": 32},
    "RANDOM_SEED": native.seed,
    "MIXTURE_OR_TASK_MODULE": "rahf_jax.t5x.tasks",
  }
  native_model, _ = build_model_from_config(native)
  assert model.config.to_dict() == native_model.to_dict()

  bindings = [
    "TRAIN_STEPS = 400",
    "DROPOUT_RATE = 0.1",
    "MODEL_OVERRIDES = {'t5.num_heads': 8, 't5.head_dim': 8}",
    "CONFIG_OVERRIDES = {'loss_weights.heatmap': 10.0}",
  ]
  model = _parse_run(model_file, run_file, bindings)["MODEL"]
  assert model.train_config.num_train_steps == 400
  assert model.loss_weights["heatmap"] == 10.0
  assert model.config.t5.dropout_rate == 0.1
  assert (model.config.t5.num_heads, model.config.t5.head_dim) == (8, 8)
  assert model.config.dtype == native_model.dtype  # the size's overrides are kept
  native_400 = rahf_optimizer.make_schedule(_native_config(f"tiny,{variant}", num_train_steps=400))
  ours = rahf_optimizer.make_schedule(model.train_config)
  assert [float(ours(s)) for s in (0, 99, 399)] == [float(native_400(s)) for s in (0, 99, 399)]


@pytest.mark.parametrize("variant", F.VARIANTS)
def test_t5x_loss_grads_and_update_equal_the_native_train_step(variant):
  """Same params and batch: RAHFModel.loss_fn and its t5x optimizer give the native train step's
  loss, gradient norm and new parameters (float32)."""
  model, _ = _parse(
    os.path.join(REPO, f"configs/t5x/models/tiny_{variant}.gin"),
    [
      "CONFIG_OVERRIDES = {'batch_size': 8, 'eval_batch_size': 8, 'warmup_steps': 0}",
      "MODEL_OVERRIDES = {'dtype': 'float32'}",
    ],
  )
  native = _native_config(f"tiny,{variant}", batch_size=8, eval_batch_size=8, warmup_steps=0)
  native.model.overrides.dtype = "float32"
  native.data.source = "synthetic"
  setup = setup_training(native)
  state = setup.init_fn(jax.random.PRNGKey(0))
  params = jax.device_get(state.params)
  batch = make_synthetic_batch(setup.model_config, 8, 32, 32, seed=3)
  new_state, metrics = setup.train_step(state, {k: jax.numpy.asarray(v) for k, v in batch.items()})

  def loss(p):
    return model.loss_fn(p, batch, jax.random.PRNGKey(1))

  (value, _), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  np.testing.assert_allclose(value, metrics["loss"], rtol=1e-5)
  grad_norm = float(jax.numpy.sqrt(sum(jax.numpy.sum(g**2) for g in jax.tree.leaves(grads))))
  np.testing.assert_allclose(grad_norm, metrics["grad_norm"], rtol=1e-4)
  t5x_state = train_state_lib.FlaxOptimTrainState.create(
    model.optimizer_def, flax.core.freeze({"params": params})
  )
  t5x_state = t5x_state.apply_gradient(flax.core.freeze(grads), learning_rate=None)
  theirs = jax.device_get(new_state.params)
  # Adam's first step moves each parameter by lr * g / (|g| + eps), about the learning rate. Where
  # |g| is near eps a parameter's step follows g's rounding, so single elements may differ by a
  # fraction of lr; over the whole tree the two updates agree to 1e-3 of their norm, while another
  # learning rate, decay or clipping changes them by O(1) of it.
  diff = sq = 0.0
  for a, b, p in zip(jax.tree.leaves(t5x_state.params), jax.tree.leaves(theirs),
                     jax.tree.leaves(params), strict=True):  # fmt: skip
    diff += float(np.sum((np.asarray(a, np.float64) - b) ** 2))
    sq += float(np.sum((np.asarray(b, np.float64) - p) ** 2))
  assert sq > 0 and np.sqrt(diff / sq) < 1e-3


def test_loss_fn_is_the_trainers_loss(tiny):
  model, _ = tiny
  batch = _batch(model, seed=1)
  params = _init(model, batch)["params"]
  loss, metrics = model.loss_fn(params, batch, dropout_rng=None)
  outputs = model.module.apply(
    {"params": params}, batch["image"], batch["prompt_ids"], batch["decoder_input_ids"]
  )
  ref, terms = losses.compute_losses(
    outputs, batch, model.variant, model.loss_weights, None, model.heatmap_loss
  )
  # loss_fn runs the same un-jitted ops on the same shapes as this reference, so the two agree
  # to the last bit on any CPU; the tolerances only allow for that.
  np.testing.assert_allclose(loss, ref, rtol=1e-6)
  assert float(metrics["loss"].compute()) == pytest.approx(float(ref), rel=1e-6)
  assert float(metrics["rahf/text_loss"].compute()) == pytest.approx(
    float(terms["text_loss"]), rel=1e-6
  )
  # A dropout rng is accepted (training mode); tiny has no dropout, so the loss is the same.
  loss_train, _ = model.loss_fn(params, batch, dropout_rng=jax.random.PRNGKey(3))
  np.testing.assert_allclose(loss_train, ref, rtol=1e-5)


def _with_copy_plan(model, batch):
  """`batch` with the copy plan of B demo-vocabulary prompts (LT tokens: some truncated)."""
  prompts = ["a red cube", "blue sky at dusk", "cat", "two xylophones on grass"] * (B // 4)
  plan = prompt_copy.copy_plan(prompts, load_tokenizer("demo"), LT)
  assert plan.mark_ids.tolist() == model.mark_ids
  return {**batch, "copy_ids": plan.copy_ids, "can_mark": plan.can_mark.astype(np.int32)}


def test_predict_batch_with_aux_is_the_shared_decoder_and_heads(tiny):
  model, _ = tiny
  batch = _batch(model, seed=2)
  params = _init(model, batch)["params"]
  free = copy.copy(model)
  free.decoding = "free"
  ids, aux = free.predict_batch_with_aux(params, batch)
  ref_ids = greedy_decode(
    model.module, {"params": params}, batch["image"], batch["prompt_ids"], LT, use_cache=False
  )
  np.testing.assert_array_equal(ids, ref_ids)
  heads = model.module.apply(
    {"params": params}, batch["image"], batch["prompt_ids"], method=model.module.predict_heads
  )
  ref_aux = postprocess.output_arrays(heads, model.variant, batch.get("output_type"))
  assert set(aux) == set(ref_aux)
  for k in aux:
    np.testing.assert_allclose(aux[k], ref_aux[k], rtol=1e-5, atol=1e-6)


def test_constrained_predictions_follow_the_batchs_copy_plan_and_the_mark_bias(tiny):
  """The default decoding: the native constrained decoder on the batch's copy plan, with
  MARK_BIAS; a large bias marks every markable word, a very negative one none."""
  model, _ = tiny
  assert model.decoding == "constrained" and model.mark_bias == 0.0
  batch = _with_copy_plan(model, _batch(model, seed=2))
  params = _init(model, batch)["params"]
  with pytest.raises(ValueError, match="lacks"):
    model.predict_batch_with_aux(params, {k: v for k, v in batch.items() if k != "copy_ids"})
  biased = copy.copy(model)
  for bias in (0.0, 1.5, 1e4, -1e4):
    biased.mark_bias = bias
    ids, _ = biased.predict_batch_with_aux(params, batch)
    ref = constrained_decode(
      model.module, {"params": params}, batch["image"], batch["prompt_ids"], batch["copy_ids"],
      batch["can_mark"], model.mark_ids, bias,
    )  # fmt: skip
    np.testing.assert_array_equal(ids, ref)
    if bias == -1e4:  # never a mark: the plan's tokens
      np.testing.assert_array_equal(ids, batch["copy_ids"])
    if bias == 1e4:  # a mark at every place the plan allows, as far as the length goes
      expected = [_every_word_marked(c, m, model.mark_ids) for c, m in
                  zip(batch["copy_ids"], batch["can_mark"], strict=True)]  # fmt: skip
      np.testing.assert_array_equal(ids, expected)
      assert np.sum(np.asarray(ids) == model.mark_ids[0]) > B


def _every_word_marked(copy_ids, can_mark, mark_ids):
  """The plan's output when the mark always wins: copy, and the mark at every can_mark place."""
  out, ptr, just_marked = [], 0, False
  while len(out) < len(copy_ids):
    if can_mark[ptr] and not just_marked:
      out += list(mark_ids)
      just_marked = True
    else:
      out.append(int(copy_ids[ptr]))
      ptr, just_marked = ptr + 1, False
  out = out[: len(copy_ids)]
  if F.EOS_ID in out:
    end = out.index(F.EOS_ID) + 1
    out[end:] = [F.PAD_ID] * (len(out) - end)
  return out


def test_gin_binds_the_decoding_and_the_recorded_mark_bias(tmp_path):
  record = {"mark_bias": 2.5, "checkpoint": {"kind": "best", "step": 7, "params_digest": "ab"}}
  (tmp_path / "mark_bias.json").write_text(json.dumps(record))
  path = os.path.join(REPO, "configs/t5x/models/tiny_multihead.gin")
  model, _ = _parse(path, [f"MARK_BIAS_RECORD = '{tmp_path}'"])
  assert (model.decoding, model.mark_bias) == ("constrained", 2.5)
  assert model.FEATURE_CONVERTER_CLS(pack=False).MODEL_FEATURES["can_mark"].dtype.name == "int32"
  model, _ = _parse(path, ["MARK_BIAS = 1.0", "DECODING = 'free'"])
  assert (model.decoding, model.mark_bias) == ("free", 1.0)
  assert "copy_ids" not in model.FEATURE_CONVERTER_CLS(pack=False).MODEL_FEATURES


def test_score_batch_is_the_target_log_likelihood(tiny):
  model, _ = tiny
  batch = _batch(model, seed=3)
  params = _init(model, batch)["params"]
  scores = np.asarray(model.score_batch(params, batch))
  logits = model.module.apply(
    {"params": params}, batch["image"], batch["prompt_ids"], batch["decoder_input_ids"]
  )["decoder_logits"]
  logp = scipy.special.log_softmax(np.asarray(logits, np.float64), axis=-1)
  picked = np.take_along_axis(logp, batch["decoder_target_ids"][..., None], axis=-1)[..., 0]
  ref = np.sum(picked * batch["decoder_loss_weights"], axis=-1)
  # score_batch takes the log-softmax in float32, the reference in float64, of the same logits:
  # each log-probability is within a few float32 ulps of |logz| (~7 for 512 tokens), ~3e-6, and
  # a score sums <= 6 of them (|score| ~ 40): <= 2e-5 absolute, well inside 1e-4 + 1e-4 * 40.
  np.testing.assert_allclose(scores, ref, rtol=1e-4, atol=1e-4)


def test_sharded_loss_on_8_devices_equals_unsharded():
  # On CPU t5x puts all 8 devices on the 'model' axis: 8 heads of 8 (the tiny size has 2 of 32),
  # and float32 for the float32 bound below.
  model, extra_rules = _parse(
    os.path.join(REPO, "configs/t5x/models/tiny_multihead.gin"),
    ["MODEL_OVERRIDES = {'vit.num_heads': 8, 't5.num_heads': 8, 't5.head_dim': 8, "
     "'dtype': 'float32'}"],
  )  # fmt: skip
  assert jax.device_count() == 8
  rules = partitioning.standard_logical_axis_rules(additional_rules=extra_rules)
  partitioner = partitioning.PjitPartitioner(num_partitions=1, logical_axis_rules=rules)
  batch = _batch(model, seed=4)
  initializer = t5x_utils.TrainStateInitializer(
    optimizer_def=model.optimizer_def,
    init_fn=model.get_initial_variables,
    input_shapes={k: v.shape for k, v in batch.items()},
    input_types={k: v.dtype for k, v in batch.items()},
    partitioner=partitioner,
  )
  state = initializer.from_scratch(jax.random.PRNGKey(0))
  axes = initializer.train_state_axes
  # On CPU t5x puts every device on the 'model' axis: the MLP kernels are split 8 ways.
  specs = jax.tree_util.tree_leaves(
    jax.tree_util.tree_map(lambda x: tuple(x.sharding.spec), state.params),
    is_leaf=lambda x: isinstance(x, tuple),
  )
  assert any("model" in s for s in specs)
  sharded = partitioner.partition(
    lambda params, b: model.loss_fn(params, b, None)[0],
    in_axis_resources=(axes.params, partitioner.data_partition_spec),
    out_axis_resources=None,
  )(state.params, batch)
  unsharded = model.loss_fn(jax.device_get(state.params), batch, None)[0]
  # The sharded reductions sum in another order (and differently on different CPUs). Each output
  # of the tiny model is at most ~10 layers deep, each a sum of <= 9 * 64 products, so its float32
  # rounding is about depth * sqrt(terms) * eps = 10 * 24 * 1.2e-7 ~ 3e-5 of its scale, and the
  # loss (means of non-negative terms) inherits that relative bound. A partitioning error (a
  # missing all-reduce) changes the loss at O(1).
  np.testing.assert_allclose(sharded, unsharded, rtol=256 * float(np.finfo(np.float32).eps))


@pytest.mark.slow
def test_t5x_train_resume_and_eval_with_our_gin(t5x_data_dir, tmp_path):
  """t5x.train (2 steps, checkpoints), resumed to 4 steps, then t5x.eval prints our metrics."""
  # One CPU device (the tiny model's 2 heads do not split over t5x's 8-device 'model' axis).
  env = dict(os.environ, RAHF_DATA_DIR=t5x_data_dir, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
  env.pop("XLA_FLAGS", None)
  model_dir = tmp_path / "model"
  common = ["--gin_file=configs/t5x/models/tiny_multihead.gin", "--gin.EVAL_STEPS=1"]

  def train(steps):
    cmd = [
      sys.executable,
      "-m",
      "t5x.train",
      *common,
      "--gin_file=configs/t5x/runs/local_tiny_cpu.gin",
      f'--gin.MODEL_DIR="{model_dir}"',
      f"--gin.TRAIN_STEPS={steps}",
      "--gin.EVAL_PERIOD=2",
      "--gin.BATCH_SIZE=4",
      "--gin.EVAL_BATCH_SIZE=2",
      "--gin.utils.SaveCheckpointConfig.period=2",
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)

  first = train(2)
  assert first.returncode == 0, first.stderr[-3000:]
  assert (model_dir / "checkpoint_2").is_dir()
  second = train(4)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Restoring checkpoint from" in second.stderr and "checkpoint_2" in second.stderr
  assert (model_dir / "checkpoint_4").is_dir()

  eval_dir = tmp_path / "eval"
  cmd = [
    sys.executable,
    "-m",
    "t5x.eval",
    *common,
    "--gin_file=configs/t5x/runs/eval.gin",
    f'--gin.CHECKPOINT_PATH="{model_dir}/checkpoint_4"',
    f'--gin.EVAL_OUTPUT_DIR="{eval_dir}"',
    "--gin.utils.DatasetConfig.batch_size=2",
  ]
  ev = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert ev.returncode == 0, ev.stderr[-3000:]
  assert "implausibility/auc_judd at step 4" in ev.stderr
  (metrics_file,) = glob.glob(str(eval_dir / "inference_eval" / "*-metrics.jsonl"))
  with open(metrics_file) as f:
    metrics = json.loads(f.readline())
  assert 0.0 <= metrics["misalignment/mse_all"] <= 1.0
  assert -1.0 <= metrics["overall/plcc"] <= 1.0


def test_finetune_from_pretrained_gin_sets_the_configs_init(t5x_data_dir, monkeypatch):
  monkeypatch.setenv("RAHF_DATA_DIR", t5x_data_dir)
  values = _parse_run(
    os.path.join(REPO, "configs/t5x/models/tiny_augmented.gin"),
    os.path.join(REPO, "configs/t5x/runs/finetune_from_pretrained.gin"),
    ['INIT_VIT = "/vit.npz"', 'INIT_RAHF = "/rahf_workdir"', "CONFIG_OVERRIDES = {'seed': 3}"],
  )
  init = values["MODEL"].train_config.init
  assert (init.vit, init.t5, init.rahf) == ("/vit.npz", "", "/rahf_workdir")
  assert values["MODEL"].train_config.seed == 3 and values["RANDOM_SEED"] == 3
