"""Prediction and scoring compute in float32 on a CPU backend (XLA:CPU runs bfloat16 dots as
float32 plus conversions) and in the config's dtype on GPU/TPU."""

import os
import sys

import jax
import numpy as np
import pytest

from rahf_jax.inference.predictor import Predictor, inference_dtype
from rahf_jax.reward import Scorer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "train"))
import train_testlib  # noqa: E402


def test_the_choice():
  assert inference_dtype("bfloat16", backend="cpu") == "float32"
  assert inference_dtype("bfloat16", backend="gpu") == "bfloat16"
  assert inference_dtype("bfloat16", backend="tpu") == "bfloat16"
  assert inference_dtype("float32", backend="tpu") == "float32"
  assert inference_dtype("float32", "bfloat16", backend="cpu") == "bfloat16"  # asked for
  with pytest.raises(ValueError, match="compute_dtype 'float17' unknown"):
    inference_dtype("float32", "float17")


@pytest.fixture(scope="module")
def bf16_workdir(tmp_path_factory):
  """A run whose config computes in bfloat16 (float32 parameters)."""
  from rahf_jax.train.loop import train_and_evaluate

  path = str(tmp_path_factory.mktemp("bf16_run"))
  config = train_testlib.train_config(
    num_train_steps=2, checkpoint_every=2, eval_every=0, log_every=2, best_metric="",
    **{"data.vocabulary": "demo", "model.overrides.dtype": "bfloat16"},
  )  # fmt: skip
  train_and_evaluate(config, path)
  return path


def _scores(predictor):
  rng = np.random.default_rng(0)
  size = int(predictor.model_config.image_size)
  images = rng.uniform(-1, 1, (8, size, size, 3)).astype(np.float32)
  prompt_ids = predictor.encode_prompts(["a red circle and a blue square"] * 8)
  return predictor.heads(images, prompt_ids)["score_overall"]


@pytest.mark.slow
def test_cpu_predicts_in_float32_and_gpu_keeps_the_config(bf16_workdir, monkeypatch):
  assert jax.default_backend() == "cpu"
  auto = Predictor.from_workdir(bf16_workdir)
  f32 = Predictor.from_workdir(bf16_workdir, compute_dtype="float32")
  bf16 = Predictor.from_workdir(bf16_workdir, compute_dtype="bfloat16")
  assert auto.model_config.dtype == "float32" and bf16.model_config.dtype == "bfloat16"
  np.testing.assert_array_equal(_scores(auto), _scores(f32))
  assert np.abs(_scores(auto) - _scores(bf16)).max() > 1e-6  # the dtype changes the numbers
  assert Scorer.from_workdir(bf16_workdir).predictor.model_config.dtype == "float32"

  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  on_gpu = Predictor.from_workdir(bf16_workdir)
  assert on_gpu.model_config.dtype == "bfloat16"
  np.testing.assert_array_equal(_scores(on_gpu), _scores(bf16))
