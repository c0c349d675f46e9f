"""configs/rahf.py: every size and variant resolves to a model config and a consistent schedule."""

import os

import pytest

from rahf_jax import features
from rahf_jax.data import tasks as data_tasks
from rahf_jax.demo import config_module
from rahf_jax.models import build_model_from_config, get_model_config
from rahf_jax.models.variants import MODEL_SIZES

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "rahf.py")


def _load():
  return config_module(_PATH)


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
@pytest.mark.parametrize("variant", features.VARIANTS)
def test_every_size_and_variant(size, variant):
  config = _load().get_config(f"{size},{variant}")
  assert (config.model.size, config.model.variant) == (size, variant)
  model_config = get_model_config(config.model.size, config.model.variant)
  assert model_config.image_size % model_config.vit.patch_size == 0
  assert config.warmup_steps < config.num_train_steps
  assert config.checkpoint_every <= config.num_train_steps
  assert config.eval_every % config.checkpoint_every == 0
  assert config.end_lr < config.learning_rate


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
def test_a_config_trains_its_size_unchanged(size):
  """The overrides a config exposes hold the size's own values: `configs/rahf.py:tiny` trains
  the registered "tiny" model (the demo's), with nothing changed on top."""
  config = _load().get_config(f"{size},multihead")
  assert {"image_size", "vit", "t5", "score_head", "heatmap_head"} <= set(config.model.overrides)
  resolved, _ = build_model_from_config(config)
  assert resolved.to_dict() == get_model_config(size, features.MULTI_HEAD).to_dict()


def test_the_demo_size_is_the_demo_model_and_its_default_tasks_match_it():
  tiny = get_model_config("tiny")
  assert (tiny.image_size, tiny.vit.stem, tiny.score_head.pool, tiny.dtype) == (
    128, "conv", "attention", "float32",
  )  # fmt: skip
  assert (tiny.vit.depth, tiny.t5.num_encoder_layers, tiny.heatmap_head.init_value) == (4, 4, 0.01)
  assert (data_tasks.DEMO_IMAGE_SIZE, data_tasks.DEMO_HEATMAP_SIZE) == (
    tiny.image_size, tiny.heatmap_size,
  )  # fmt: skip
  assert get_model_config("test").image_size == 64  # the unit tests' model


def test_big_sizes_follow_the_paper_and_reproduction():
  config = _load().get_config("L16_t5base_384,multihead")
  assert config.batch_size == 256 and config.num_train_steps == 20_000  # the paper
  assert (config.learning_rate, config.end_lr, config.weight_decay) == (2e-5, 1e-5, 2e-3)
  assert config.logical_rules == "fsdp"


def test_runlocal_is_a_short_run():
  config = _load().get_config("B16_t5base_384,augmented,runlocal")
  assert config.num_train_steps == 10 and config.batch_size == 8


def test_default_variant_is_multihead():
  assert _load().get_config("tiny").model.variant == features.MULTI_HEAD


@pytest.mark.parametrize(
  "arg, match",
  [("huge,multihead", "size 'huge' unknown"), ("tiny,triple", "variant 'triple' unknown"),
   ("tiny,multihead,fast", "flags \\['fast'\\] unknown")],
)  # fmt: skip
def test_bad_arg_names_the_choices(arg, match):
  with pytest.raises(ValueError, match=match):
    _load().get_config(arg)
