"""rahf_jax.t5x.run_settings: the t5x route's settings are the native config's (no t5x needed).

The gin files (configs/t5x/) read the model, loss weights, optimizer, schedule and the t5x macros
through run_settings; these tests check that what run_settings resolves is configs/rahf.py's
get_config field by field, that the macros t5x owns (TRAIN_STEPS, DROPOUT_RATE, MODEL_OVERRIDES)
reach the config without dropping the size's settings, and that the adapter's loss function is
the native train step's loss, bit for bit, on the same params, batch and dropout key (its gradient
and update follow: the t5x route's optimizer is make_optimizer of that same config).

This is what tests/t5x/ checks where t5x is not installed (as in CI), with the SeqIO tasks and
metric functions (test_t5x_tasks.py), t5x.infer's output hooks (test_infer_output.py) and the
demo-parity rule (test_route_parity.py). The adapter that t5x calls (`RAHFModel`) and t5x's own
train/infer runs with the gin files need t5x: test_t5x_adapter.py and test_t5x_infer.py skip
without it, with that reason in pytest's summary.
"""

import glob
import importlib.util
import os
import re

import flax
import jax
import numpy as np
import pytest
from host_params import random_like

from rahf_jax import features as F
from rahf_jax.models import MODEL_SIZES, build_model, build_model_from_config
from rahf_jax.sharding import workdir_files
from rahf_jax.t5x import run_settings
from rahf_jax.train import forward, losses
from rahf_jax.train import optimizer as rahf_optimizer
from rahf_jax.train.loop import build_setup
from rahf_jax.train.synthetic_batches import make_synthetic_batch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# configs/rahf.py loaded by path, as the native CLI's --config flag does.
_SPEC = importlib.util.spec_from_file_location("native_rahf_config", f"{REPO}/configs/rahf.py")
native_configs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(native_configs)


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
@pytest.mark.parametrize("variant", F.VARIANTS)
def test_run_config_is_the_native_config(size, variant):
  for flags in ([], ["reproduction"]):
    native = native_configs.get_config(",".join([size, variant, *flags]))
    resolved = run_settings.run_config(size, variant, flags)
    assert resolved.to_dict() == native.to_dict()
    # With no t5x macro set, the config the adapter trains with is the native one unchanged.
    config = run_settings.train_config(resolved)
    assert config.to_dict() == native.to_dict()
    native_model, _ = build_model_from_config(native)
    assert run_settings.model_config(config).to_dict() == native_model.to_dict()
    assert run_settings.loss_weights(config) == native.loss_weights.to_dict()
    assert run_settings.train_steps(config) == native.num_train_steps
    assert run_settings.batch_size(config) == native.batch_size
    assert run_settings.eval_batch_size(config) == native.eval_batch_size
    assert run_settings.feature_lengths(config) == {
      "inputs": native.data.prompt_len,
      "targets": native.data.target_len,
    }
    assert run_settings.dropout_rate(config) == native_model.t5.dropout_rate
    assert run_settings.seed(config) == native.seed
    assert run_settings.eval_period(config) == native.eval_every
    assert run_settings.checkpoint_period(config) == native.checkpoint_every
    assert run_settings.vocabulary(config) == native.data.vocabulary
    assert run_settings.heatmap_loss(config) == native.heatmap_loss
  # The tiny config's loss weights are not t5x's 1/1/1, nor its heatmap loss the paper's MSE.
  tiny = run_settings.run_config("tiny", variant)
  assert run_settings.loss_weights(tiny) == {"heatmap": 30.0, "score": 5.0, "text": 1.0}
  assert run_settings.heatmap_loss(tiny) == "bce"
  assert run_settings.heatmap_loss(run_settings.run_config("B16_t5base_384", variant)) == "mse"


def test_schedule_follows_train_steps_and_overrides():
  base = run_settings.run_config("tiny", F.MULTI_HEAD, overrides={"learning_rate": 5e-4})
  assert base.learning_rate == 5e-4
  config = run_settings.train_config(base, num_train_steps=400)
  native = native_configs.get_config("tiny,multihead")
  native.learning_rate = 5e-4
  native.num_train_steps = 400
  ours, theirs = rahf_optimizer.make_schedule(config), rahf_optimizer.make_schedule(native)
  for step in (0, 1, 50, 100, 250, 399, 400):
    assert float(ours(step)) == float(theirs(step))
  assert base.num_train_steps == 1500  # train_config copies; RUN_CONFIG is not changed
  with pytest.raises(ValueError, match="no_such_field"):
    run_settings.run_config("tiny", F.MULTI_HEAD, overrides={"no_such_field": 1})
  with pytest.raises(ValueError, match="no field 'nope'"):
    run_settings.run_config("tiny", F.MULTI_HEAD, overrides={"nope.lr": 1})


def test_model_overrides_and_dropout_merge_into_the_sizes_settings():
  base = run_settings.run_config("L16_t5base_384", F.MULTI_HEAD, ["reproduction"])
  config = run_settings.train_config(
    base, dropout_rate=0.25, model_overrides={"t5.num_heads": 16, "vit.num_heads": 8}
  )
  model = run_settings.model_config(config)
  assert model.t5.num_heads == 16 and model.vit.num_heads == 8 and model.t5.dropout_rate == 0.25
  # The size's and the flag's own overrides are kept.
  assert model.vit.layer_norm_epsilon == 1e-12
  assert model.decoder_memory == "prompt"
  assert model.dtype == base.model.overrides.dtype
  with pytest.raises(ValueError, match="t5.no_such_field"):
    run_settings.model_config(
      run_settings.train_config(base, model_overrides={"t5.no_such_field": 1})
    )
  with pytest.raises(ValueError, match="DROPOUT_RATE"):
    run_settings.train_config(base, dropout_rate=1.5)


def _gin_lines(path):
  with open(path) as f:
    return [line.split("#")[0] for line in f]


def test_gin_files_copy_no_config_values():
  """The model files bind no number: every value comes from configs/rahf.py via run_settings."""
  model_files = glob.glob(os.path.join(REPO, "configs/t5x/models/*.gin"))
  assert len(model_files) == 7
  for path in model_files:
    for line in _gin_lines(path):
      assert not re.search(r"=\s*[-\d.]+(e-?\d+)?\s*$", line), f"{path}: {line.strip()}"
  for name in ("finetune", "pretrain"):
    text = "".join(_gin_lines(os.path.join(REPO, f"configs/t5x/runs/{name}.gin")))
    for macro in ("TRAIN_STEPS", "BATCH_SIZE", "DROPOUT_RATE", "TASK_FEATURE_LENGTHS"):
      assert re.search(rf"^{macro} = @rahf_settings\.", text, re.M), (name, macro)
  rahf_gin = "".join(_gin_lines(os.path.join(REPO, "configs/t5x/models/rahf.gin")))
  for binding in (
    "rahf_optimizer.adamw:\n  run_config = %RUN_CONFIG",
    "rahf_models.RAHFModel:\n  run_config = %RUN_CONFIG",
    "model_overrides = %MODEL_OVERRIDES",
    "dropout_rate = %DROPOUT_RATE",
  ):
    assert binding in rahf_gin


# The demo config at 64 px with one layer per stack: the same stem, heads and losses, compiled
# in a fraction of the time.
SMALLER = {
  "model.overrides.image_size": 64,
  "model.overrides.vit.depth": 1,
  "model.overrides.t5.num_encoder_layers": 1,
  "model.overrides.t5.num_decoder_layers": 1,
}


@pytest.mark.parametrize("variant", F.VARIANTS)
def test_adapter_loss_is_the_native_train_steps_loss(variant):
  """run_settings.loss_fn, given the loss weights and pixel loss run_settings reads, is the loss the
  native train step differentiates: forward_and_losses with the native setup's model, weights,
  heatmap loss and dropout key (rahf_jax.train.loop.build_setup), equal bit for bit on the same
  params, batch and key, in training mode and without a key (deterministic, as the eval step).

  Nothing else needs numbers: the gradient and update are jax.grad of this loss and the optax
  chain of make_optimizer, which the t5x route (rahf_jax.t5x.optimizer.adamw) builds from
  run_settings.train_config, asserted here to be the native config."""
  overrides = {
    **SMALLER,
    "model.overrides.dtype": "float32",
    "model.overrides.t5.dropout_rate": 0.1,
  }
  native = native_configs.get_config(f"tiny,{variant}")
  for key, value in overrides.items():
    run_settings.set_dotted(native, key, value, "test")
  native.data.source = "synthetic"
  config = run_settings.train_config(run_settings.run_config("tiny", variant, overrides=overrides))
  config.data.source = "synthetic"
  assert config.to_dict() == native.to_dict()

  setup = build_setup(native)  # compiles nothing
  params = random_like(setup.abstract_state.params)  # both sides compute on the same ones
  model_cfg = run_settings.model_config(config)
  batch = make_synthetic_batch(model_cfg, 8, config.data.prompt_len, config.data.target_len, 3)
  module = build_model(model_cfg)
  weights, pixel_loss = run_settings.loss_weights(config), run_settings.heatmap_loss(config)
  native_weights, native_pixel_loss = native.loss_weights.to_dict(), losses.heatmap_loss_of(native)

  @jax.jit
  def adapter_and_native(params, batch, key):
    """{mode: (adapter's (loss, terms), native's)}, in training mode (the key) and deterministic."""
    return {
      mode: (
        run_settings.loss_fn(module, params, batch, variant, weights, k, pixel_loss),
        forward.forward_and_losses(
          setup.model, params, batch, variant, native_weights, k, native_pixel_loss
        ),
      )
      for mode, k in (("train", key), ("deterministic", None))
    }

  results = jax.device_get(adapter_and_native(params, batch, jax.random.PRNGKey(1)))
  for mode, ((loss, terms), (want_loss, want_terms)) in results.items():
    assert set(terms) == set(want_terms), mode
    for key in ("heatmap_loss", "score_loss", "text_loss"):
      assert np.isfinite(want_terms[key]) and want_terms[key] > 0, (mode, key)
    np.testing.assert_array_equal(loss, want_loss, err_msg=mode)
    for key in want_terms:
      np.testing.assert_array_equal(terms[key], want_terms[key], err_msg=f"{mode}: {key}")
  # The key reaches the model: T5's dropout changes the text loss.
  assert results["train"][0][1]["text_loss"] != results["deterministic"][0][1]["text_loss"]


def test_pretrained_start_is_read_by_the_init_not_compiled_into_it(tmp_path):
  """config.init.rahf = a native workdir: t5x's init (jitted) returns its params; tracing the
  init for shapes reads nothing."""

  config = run_settings.run_config("tiny", F.MULTI_HEAD, overrides=SMALLER)
  model_cfg = run_settings.model_config(config)
  module = build_model(model_cfg)
  batch = make_synthetic_batch(model_cfg, 1, 8, 8, seed=0)

  abstract = jax.eval_shape(
    module.init, jax.random.PRNGKey(0), batch["image"], batch["prompt_ids"],
    batch["decoder_input_ids"],
  )  # fmt: skip

  def init(seed):  # params of the init's shapes and dtypes (no init to compile)
    return random_like(dict(flax.linen.unbox(abstract["params"])), seed, scale=1.0)

  saved = init(5)
  workdir = str(tmp_path / "native")
  workdir_files.save_params(workdir, saved)
  workdir_files.save_config(config, workdir)

  started = init(0)
  missing = run_settings.train_config(config)
  missing.init.rahf = str(tmp_path / "missing")
  missing.init.vit = str(tmp_path / "missing.npz")
  # Shapes only (t5x's eval_shape of the init, or a resumed run): no file is opened.
  shapes = jax.eval_shape(lambda p: run_settings.with_pretrained(missing, model_cfg, p), started)
  assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(np.shape, started)

  config.init.rahf = workdir
  loaded = jax.jit(lambda p: run_settings.with_pretrained(config, model_cfg, p))(started)
  for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(saved), strict=True):
    np.testing.assert_array_equal(a, b)
  config.init.rahf = ""
  assert run_settings.with_pretrained(config, model_cfg, started) is started
