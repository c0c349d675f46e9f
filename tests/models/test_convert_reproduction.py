"""Weight conversion against PyTorch models: transformers' ViT and T5, and a torch RAHF.

The torch RAHF (bench/torch_rahf.py) is this project's own port, not the PyTorch reproduction's
code: transformers' ViT and T5 (third-party, the reproduction's backbones) wired together with
heatmap and score heads written here from the reproduction's documented layout and state-dict
names. So parity with it shows that `rahf-jax convert` maps that layout onto our modules and
that our ViT, T5 and decoding equal transformers'; the heads' agreement with the reproduction's
own modules rests on that port (its docstring lists the layout it follows).

Small random configs built here (no hub access). Our modules, loaded from the PyTorch weights,
must compute the same function in float32: the tolerance 1e-4 is ~1e3 float32 ulps at the
outputs' scale (<= a few units), room for the different summation orders of two libraries,
while a wrong mapping (a transposed kernel, a mis-ordered flatten, a missing norm scale) moves
outputs by O(0.1-1).
"""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from rahf_jax import features  # noqa: E402
from rahf_jax.inference.predictor import Predictor  # noqa: E402
from rahf_jax.inference.tokenizer import DEMO_VOCAB_PATH, load_tokenizer  # noqa: E402
from rahf_jax.models import build_model, get_model_config, weights  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests"))
from host_params import init_shapes, random_like  # noqa: E402
from torch_testlib import T5, VIT, perturb, small_torch_rahf  # noqa: E402

ATOL = 1e-4
PROMPTS = ["a red circle on a blue background", "two cats and a green square"]


@pytest.fixture(scope="module")
def torch_model():
  return small_torch_rahf()


@pytest.fixture(scope="module")
def converted(torch_model, tmp_path_factory):
  """`rahf-jax convert` (the CLI, as a user runs it) on the saved state dict."""
  tmp = tmp_path_factory.mktemp("convert")
  torch.save(torch_model.state_dict(), tmp / "rahf_model.pt")
  out = tmp / "workdir"
  env = dict(os.environ, USE_TF="0")
  proc = subprocess.run(
    [sys.executable, "-m", "rahf_jax.cli", "convert", f"--checkpoint={tmp / 'rahf_model.pt'}",
     f"--spiece={DEMO_VOCAB_PATH}", f"--out={out}"],
    capture_output=True, text=True, cwd=REPO, env=env, timeout=600,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-3000:]
  return out


@pytest.fixture(scope="module")
def predictor(converted):
  """The converted workdir's predictor, loaded once (HF's generate decodes free, so ours does)."""
  return Predictor.from_workdir(str(converted), decoding="free")


def _inputs(seed=0):
  rs = np.random.RandomState(seed)
  image = rs.uniform(-1, 1, (len(PROMPTS), 32, 32, 3)).astype(np.float32)
  tok = load_tokenizer("demo")
  ids = [tok.encode(p) + [features.EOS_ID] for p in PROMPTS]
  return image, ids


@pytest.mark.slow
def test_converted_config_reads_every_size_off_the_state_dict(predictor):
  c = predictor.model_config
  assert (c.image_size, c.vit.width, c.vit.depth, c.vit.num_heads, c.vit.patch_size) == (
    32, 64, 2, 2, 8
  )  # fmt: skip
  assert (c.t5.d_model, c.t5.num_encoder_layers, c.t5.vocab_size, c.t5.tie_embeddings) == (
    64, 2, 512, True
  )  # fmt: skip
  assert list(c.heatmap_head.up_channels) == [16, 8, 8, 8] and c.heatmap_size == 64
  assert list(c.score_head.convs) == [64, 32, 16, 8, 4, 4] and list(c.score_head.dense) == [32, 16]
  assert (c.decoder_memory, c.vit.layer_norm_epsilon, c.variant) == (
    "prompt", 1e-12, features.MULTI_HEAD
  )  # fmt: skip


@pytest.mark.slow
def test_converted_heads_and_greedy_ids_equal_the_torch_model(torch_model, predictor):
  image, ids = _inputs()
  prompt_ids = predictor.encode_prompts(PROMPTS)  # padded to 128: padding is masked out
  assert [list(r[: len(i)]) for r, i in zip(prompt_ids, ids, strict=True)] == ids
  ours = predictor.heads(image, prompt_ids)
  ours_ids = predictor.decode(image, prompt_ids, max_length=12)
  for row in range(len(PROMPTS)):  # the reproduction runs one unpadded prompt at a time
    pixels = torch.from_numpy(image[row : row + 1].transpose(0, 3, 1, 2))
    with torch.no_grad():
      heatmaps, scores, _ = torch_model(pixels, torch.tensor([ids[row]]))
    for s in features.SCORE_TYPES:
      np.testing.assert_allclose(ours[f"score_{s}"][row], scores[s].numpy()[0], atol=ATOL)
    for h in features.HEATMAP_TYPES:
      theirs = heatmaps[h].numpy()[0]
      assert theirs.shape == (64, 64)
      np.testing.assert_allclose(ours[f"heatmap_{h}"][row], theirs, atol=ATOL)
    want = torch_model.generate(pixels, torch.tensor([ids[row]]), max_new_tokens=12)[0].numpy()
    got = ours_ids[row][: len(want)]
    np.testing.assert_array_equal(got, want)  # ids exactly (HF stops at EOS, we pad after it)
  # The outputs vary with the input (a constant model would pass the equality checks too).
  assert np.ptp([ours["score_plausibility"]]) > 1e-3


@pytest.mark.slow
def test_converted_decoder_logits_equal_teacher_forced_torch(torch_model, predictor):
  image, ids = _inputs(1)
  model = predictor.setup.model
  dec = np.array([[0, 5, 9, 17, 3, 1]], np.int32)
  prompt_ids = jnp.asarray(predictor.encode_prompts(PROMPTS[:1]))
  ours = jax.jit(model.apply)({"params": predictor.params}, jnp.asarray(image[:1]), prompt_ids, dec)
  pixels = torch.from_numpy(image[:1].transpose(0, 3, 1, 2))
  with torch.no_grad():
    _, _, logits = torch_model(pixels, torch.tensor([ids[0]]), torch.from_numpy(dec).long())
  np.testing.assert_allclose(ours["decoder_logits"][0], logits.numpy()[0], atol=ATOL)


@pytest.fixture(scope="module")
def hf_backbones(tmp_path_factory):
  """An HF ViT saved as a folder (safetensors) and an HF T5 saved as pytorch_model.bin."""
  from transformers import T5Config, T5ForConditionalGeneration, ViTConfig, ViTModel

  tmp = tmp_path_factory.mktemp("hf")
  torch.manual_seed(2)
  vit = ViTModel(ViTConfig(**VIT)).eval()
  t5 = T5ForConditionalGeneration(T5Config(decoder_start_token_id=0, **T5)).eval()
  perturb(vit, 3)
  perturb(t5, 4)
  t5.lm_head.weight = t5.shared.weight
  vit.save_pretrained(tmp / "vit")  # model.safetensors
  torch.save(t5.state_dict(), tmp / "t5.bin")
  return vit, t5, tmp


@functools.cache  # the model and its initial parameters, for both tests that load into them
def _tiny_like_hf():
  c = get_model_config("test", features.MULTI_HEAD)
  c.update({"image_size": 32, "dtype": "float32", "vit": {"layer_norm_epsilon": 1e-12}})
  model = build_model(c)
  args = (jnp.zeros((1, 32, 32, 3)), jnp.ones((1, 8), jnp.int32), jnp.ones((1, 4), jnp.int32))
  # The tree the files load into, made on the host: no init to compile.
  return c, model, random_like(init_shapes(model.init, *args))


@pytest.mark.slow
def test_hf_vit_and_t5_load_and_match_transformers(hf_backbones):
  vit, t5, tmp = hf_backbones
  c, model, params = _tiny_like_hf()
  loaded = weights.load_vit(tmp / "vit", params, num_heads=2)
  loaded = weights.load_t5(tmp / "t5.bin", loaded, tie_embeddings=True)
  rs = np.random.RandomState(5)
  image = rs.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    want = vit(pixel_values=torch.from_numpy(image.transpose(0, 3, 1, 2))).last_hidden_state
  vit_apply = jax.jit(functools.partial(model.apply, method=lambda m, x: m.vit(x)))
  got = vit_apply({"params": loaded}, jnp.asarray(image))
  np.testing.assert_allclose(got, want.numpy(), atol=ATOL)

  # T5 encoder over given embeddings (no padding) and the decoder's logits.
  embeds = rs.normal(size=(2, 7, 64)).astype(np.float32)
  dec = np.array([[0, 4, 8, 1], [0, 3, 2, 1]], np.int32)
  with torch.no_grad():
    enc = t5.encoder(inputs_embeds=torch.from_numpy(embeds)).last_hidden_state
    logits = t5(encoder_outputs=(enc,), decoder_input_ids=torch.from_numpy(dec).long()).logits

  def encode_decode(m, x, d):
    encoded = m.encoder(x, jnp.ones(x.shape[:2], bool))
    return encoded, m.decoder(d, encoded, jnp.ones(x.shape[:2], bool))

  got_enc, got_logits = jax.jit(functools.partial(model.apply, method=encode_decode))(
    {"params": loaded}, jnp.asarray(embeds), jnp.asarray(dec)
  )
  np.testing.assert_allclose(got_enc, enc.numpy(), atol=ATOL)
  np.testing.assert_allclose(got_logits, logits.numpy(), atol=ATOL)


def test_load_errors_name_the_entry(hf_backbones, tmp_path):
  vit, _, tmp = hf_backbones
  _, _, params = _tiny_like_hf()
  sd = {k: v.numpy() for k, v in vit.state_dict().items()}
  del sd["encoder.layer.1.output.dense.bias"]
  from safetensors.numpy import save_file

  save_file(sd, tmp_path / "broken.safetensors")
  with pytest.raises(ValueError, match="MlpBlock_0/Dense_1/bias"):
    weights.load_vit(tmp_path / "broken.safetensors", params, num_heads=2)
  with pytest.raises(FileNotFoundError, match="not found"):
    weights.load_vit(tmp_path / "nope.safetensors", params, num_heads=2)
