"""Pretrained starts (config.init): training begins from the loaded values, the rest stays random.

The loaded weights come from PyTorch models: a small torch RAHF (tests/torch_testlib.py's, with
one ViT layer and one T5 layer each side; this project's own port of the reproduction's layout on
transformers' ViT and T5, not the reproduction's code), converted, and Hugging Face backbones saved
the way `save_pretrained` / `torch.save` write them. One layer per stack: what is checked (the
loaded values start the run, the groups loaded or left random) does not depend on the depth, and
every parameter kind of a layer is still converted; each layer less is a smaller init to compile.
"""

import os
import sys

import flax
import jax
import numpy as np
import pytest
import train_testlib

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rahf_jax.inference.predictor import load_config  # noqa: E402
from rahf_jax.inference.tokenizer import DEMO_VOCAB_PATH  # noqa: E402
from rahf_jax.models import weights  # noqa: E402
from rahf_jax.sharding import workdir_files  # noqa: E402
from rahf_jax.train.convert import convert_reproduction  # noqa: E402
from rahf_jax.train.loop import train_and_evaluate  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch_testlib  # noqa: E402

VIT = dict(torch_testlib.VIT, num_hidden_layers=1)
T5 = dict(torch_testlib.T5, num_layers=1)


def small_torch_rahf(seed: int):
  """torch_testlib.small_torch_rahf with one layer in the ViT and in each T5 stack."""
  torch.manual_seed(seed)
  model = torch_testlib.torch_rahf.TorchRAHF(
    VIT, T5, torch_testlib.HEATMAP, score_divisors=torch_testlib.SCORE_DIVISORS,
    score_dense=torch_testlib.SCORE_DENSE,
  ).eval()  # fmt: skip
  torch_testlib.perturb(model, seed + 1)
  model.t5.lm_head.weight = model.t5.shared.weight  # keep the tie after perturbing
  return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("init")
  torch.save(small_torch_rahf(seed=7).state_dict(), tmp / "rahf_model.pt")
  convert_reproduction(str(tmp / "rahf_model.pt"), DEMO_VOCAB_PATH, str(tmp / "converted"))
  return tmp


def _config(converted_dir, **init):
  """A short synthetic-data run of the converted model's architecture, with config.init set."""
  c = train_testlib.train_config(num_train_steps=2, checkpoint_every=2, eval_every=0)
  c.model.overrides = load_config(str(converted_dir)).model.overrides
  for key, value in init.items():
    c.init[key] = value
  return c


def _flat(tree):
  return flax.traverse_util.flatten_dict(jax.device_get(tree), sep="/")


@pytest.mark.slow
def test_init_rahf_starts_from_the_converted_params(converted, tmp_path):
  """A run's state at step 0 (stopped before its first step) is exactly the converted params,
  whether config.init.rahf names the .pt itself or the converted workdir. (The train step is not
  needed: it starts from this state, as every run does; tests/train/test_loop.py.)"""
  workdir = converted / "converted"
  want, _ = workdir_files.restore_params(str(workdir), _abstract(converted))
  want = _flat(want)
  # The two configs differ only in the path, which the init program does not contain: one compile.
  for source in (str(converted / "rahf_model.pt"), str(workdir)):
    c = _config(workdir, rahf=source)
    state = train_and_evaluate(c, str(tmp_path / os.path.basename(source)), stop_at_step=0)["state"]
    got = _flat(state.params)
    assert got.keys() == want.keys(), source
    for key in want:
      np.testing.assert_array_equal(got[key], want[key], err_msg=f"{source}: {key}")


def _abstract(converted):
  from rahf_jax.inference.predictor import InferenceSetup  # noqa: PLC0415

  return InferenceSetup.from_config(load_config(str(converted / "converted"))).abstract_params


@pytest.mark.slow
def test_init_vit_and_t5_from_hugging_face_files_rest_random(converted, tmp_path):
  from transformers import T5Config, T5ForConditionalGeneration, ViTConfig, ViTModel

  vit = ViTModel(ViTConfig(**VIT))
  t5 = T5ForConditionalGeneration(T5Config(decoder_start_token_id=0, **T5))
  vit.save_pretrained(tmp_path / "vit")
  t5.save_pretrained(tmp_path / "t5")
  workdir = converted / "converted"
  random = train_and_evaluate(_config(workdir), str(tmp_path / "random"), stop_at_step=0)
  c = _config(workdir, vit=str(tmp_path / "vit"), t5=str(tmp_path / "t5"))
  state = train_and_evaluate(c, str(tmp_path / "hf"), stop_at_step=0)["state"]
  abstract = _abstract(converted)
  want = weights.load_t5(tmp_path / "t5", weights.load_vit(tmp_path / "vit", abstract, 2), True)
  got, rand = _flat(state.params), _flat(random["state"].params)
  for key, value in _flat(want).items():
    group = key.split("/")[0]
    if group in ("vit", "token_embedder", "encoder", "decoder"):
      np.testing.assert_array_equal(got[key], value, err_msg=key)
    else:  # heads and the projection keep the seed's random init
      np.testing.assert_array_equal(got[key], rand[key], err_msg=key)
  assert not np.array_equal(got["vit/cls"], rand["vit/cls"])


def test_init_with_a_mismatched_file_names_the_entry(converted, tmp_path):
  from transformers import ViTConfig, ViTModel

  # The converted model's depth (VIT), half its width: only the shapes mismatch.
  ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=VIT["num_hidden_layers"],
                     num_attention_heads=2, intermediate_size=64, image_size=32,
                     patch_size=8)).save_pretrained(tmp_path / "vit")  # fmt: skip
  c = _config(converted / "converted", vit=str(tmp_path / "vit"))
  with pytest.raises(ValueError, match=r"ViT weights .* has shape .* in the checkpoint"):
    train_and_evaluate(c, str(tmp_path / "bad"), stop_at_step=0)
