"""Prediction and scoring compute in float32 on a CPU backend (XLA:CPU runs bfloat16 dots as
float32 plus conversions) and in the config's dtype on GPU/TPU."""

import jax
import numpy as np
import pytest
import shared_runs

from rahf_jax.inference.predictor import Predictor, inference_dtype, load_config
from rahf_jax.reward import Scorer


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
  """A run whose config computes in bfloat16: the tests' tiny run with its config's compute dtype
  set to bfloat16 (what a bfloat16 run saves; its parameters are float32 in either case)."""
  run = shared_runs.tiny_run()
  assert load_config(run).model.overrides.dtype == "float32"
  dest = tmp_path_factory.mktemp("bf16_run")
  return shared_runs.copy_of(run, dest, config_updates={"model.overrides.dtype": "bfloat16"})


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
