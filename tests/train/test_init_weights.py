"""Pretrained starts (config.init): training begins from the loaded values, the rest stays random.

The loaded weights come from PyTorch models: a small torch RAHF (tests/torch_testlib.py; this
project's own port of the reproduction's layout on transformers' ViT and T5, not the
reproduction's code), converted, and Hugging Face backbones saved the way `save_pretrained` /
`torch.save` write them.
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

from rahf_jax import features  # noqa: E402
from rahf_jax.inference.predictor import load_config  # noqa: E402
from rahf_jax.inference.tokenizer import DEMO_VOCAB_PATH  # noqa: E402
from rahf_jax.models import build_model_from_config, weights  # noqa: E402
from rahf_jax.sharding import workdir_files  # noqa: E402
from rahf_jax.train import input_batches, losses  # noqa: E402
from rahf_jax.train.convert import convert_reproduction  # noqa: E402
from rahf_jax.train.loop import train_and_evaluate  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_testlib import small_torch_rahf  # noqa: E402


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


def test_init_rahf_starts_from_the_converted_params_and_its_loss(converted, tmp_path):
  workdir = converted / "converted"
  params, _ = workdir_files.restore_params(str(workdir), _abstract(converted))
  for source in (str(workdir), str(converted / "rahf_model.pt")):  # a workdir, or the .pt itself
    c = _config(workdir, rahf=source)
    out = train_and_evaluate(c, str(tmp_path / os.path.basename(source)), stop_at_step=1)
    # The loss of step 1 is the loss of the initial params on the first batch: recompute it
    # from the converted params directly.
    model_config, model = build_model_from_config(c)
    batch = next(input_batches.train_batches(c, model_config, start_batch=0))
    outputs = model.apply({"params": params}, batch["image"], batch["prompt_ids"],
                          batch["decoder_input_ids"])  # fmt: skip
    want, _ = losses.compute_losses(outputs, batch, features.MULTI_HEAD, c.loss_weights.to_dict())
    np.testing.assert_allclose(out["train_losses"][1], float(want), rtol=1e-5)
  # Step 0's state is exactly the converted params (a run stopped before its first step).
  c = _config(workdir, rahf=str(workdir))
  state = train_and_evaluate(c, str(tmp_path / "zero"), stop_at_step=0)["state"]
  got, want = _flat(state.params), _flat(params)
  assert got.keys() == want.keys()
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _abstract(converted):
  from rahf_jax.inference.predictor import InferenceSetup  # noqa: PLC0415

  return InferenceSetup.from_config(load_config(str(converted / "converted"))).abstract_params


def test_init_vit_and_t5_from_hugging_face_files_rest_random(converted, tmp_path):
  from torch_testlib import T5, VIT
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

  ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, image_size=32, patch_size=8)).save_pretrained(
    tmp_path / "vit"
  )  # fmt: skip
  c = _config(converted / "converted", vit=str(tmp_path / "vit"))
  with pytest.raises(ValueError, match=r"ViT weights .* has shape .* in the checkpoint"):
    train_and_evaluate(c, str(tmp_path / "bad"), stop_at_step=0)
