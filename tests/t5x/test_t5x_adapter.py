"""The t5x adapter (rahf_jax.t5x.models) and the gin configs; skipped where t5x is absent.

Reference values come from rahf_jax's own modules called directly (the adapter must only
adapt them) and from numpy; the sharded checks run t5x's PjitPartitioner on the 8 fake CPU
devices of tests/conftest.py with the logical rules declared in configs/t5x/models/rahf.gin.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

# A submodule: under pytest, tests/t5x itself would satisfy a plain `import t5x`.
pytest.importorskip(
  "t5x.models", reason="t5x is not installed (pip install -e .[t5x]; see README.md, section t5x)"
)

import flax.linen as nn  # noqa: E402
import gin  # noqa: E402
import jax  # noqa: E402
import scipy.special  # noqa: E402
from flax.linen import partitioning as flax_partitioning  # noqa: E402
from t5x import partitioning  # noqa: E402
from t5x import utils as t5x_utils  # noqa: E402

from rahf_jax import features as F  # noqa: E402
from rahf_jax.inference import postprocess  # noqa: E402
from rahf_jax.models import greedy_decode  # noqa: E402
from rahf_jax.train import losses  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_FILES = sorted(glob.glob(os.path.join(REPO, "configs/t5x/models/*_*.gin")))
B, LP, LT = 8, 8, 6


def _parse(model_file):
  """(RAHFModel, extra logical rules) from one of our gin model files."""
  gin.clear_config()
  gin.add_config_file_search_path(REPO)
  gin.parse_config_files_and_bindings([model_file], ["TRAIN_STEPS = 10"])
  model = gin.query_parameter("%MODEL").scoped_configurable_fn()
  rules = gin.query_parameter("partitioning.standard_logical_axis_rules.additional_rules")
  gin.clear_config()
  return model, rules


@pytest.fixture(scope="module", params=F.VARIANTS)
def tiny(request):
  return _parse(os.path.join(REPO, f"configs/t5x/models/tiny_{request.param}.gin"))


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


def test_loss_fn_is_the_trainers_loss(tiny):
  model, _ = tiny
  batch = _batch(model, seed=1)
  params = _init(model, batch)["params"]
  loss, metrics = model.loss_fn(params, batch, dropout_rng=None)
  outputs = model.module.apply(
    {"params": params}, batch["image"], batch["prompt_ids"], batch["decoder_input_ids"]
  )
  ref, terms = losses.compute_losses(outputs, batch, model.variant, model.loss_weights)
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


def test_predict_batch_with_aux_is_the_shared_decoder_and_heads(tiny):
  model, _ = tiny
  batch = _batch(model, seed=2)
  params = _init(model, batch)["params"]
  ids, aux = model.predict_batch_with_aux(params, batch)
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


def test_sharded_loss_on_8_devices_equals_unsharded(tiny):
  model, extra_rules = tiny
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
  env = dict(os.environ, RAHF_DATA_DIR=t5x_data_dir, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
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
