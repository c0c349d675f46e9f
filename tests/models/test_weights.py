"""Weight import: ViT .npz (vision_transformer and big_vision names) and T5X trees map onto ours."""

import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from host_params import init_shapes, random_like

from rahf_jax import features
from rahf_jax.models import build_model, get_model_config, weights


@pytest.fixture(scope="module")
def two_inits():
  c = get_model_config("test", features.AUGMENTED_PROMPT)
  model = build_model(c)
  args = (jnp.zeros((1, 64, 64, 3)), jnp.ones((1, 4), jnp.int32), jnp.ones((1, 3), jnp.int32))
  shapes = init_shapes(model.init, *args)
  return random_like(shapes, seed=0), random_like(shapes, seed=1)  # no init to compile


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_vit_npz_roundtrip_vision_transformer_names(tmp_path, two_inits):
  src, dst = two_inits
  entries = weights.vit_npz_entries(src["vit"], "vision_transformer")
  # Spot-check the documented names (Augreg checkpoints use these keys).
  assert "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel" in entries
  assert "Transformer/encoderblock_0/MlpBlock_3/Dense_1/bias" in entries
  assert "Transformer/posembed_input/pos_embedding" in entries and "cls" in entries
  entries["head/kernel"] = np.zeros((64, 10))  # a classifier head is ignored
  np.savez(tmp_path / "vit.npz", **entries)
  loaded = weights.load_vit_npz(tmp_path / "vit.npz", dst)
  _assert_trees_equal(loaded["vit"], src["vit"])
  _assert_trees_equal(loaded["encoder"], dst["encoder"])  # the rest is untouched


@pytest.mark.slow
def test_vit_npz_big_vision_scanned_layout(tmp_path, two_inits):
  src, dst = two_inits
  src_vit = jax.tree.map(np.copy, src["vit"])
  src_vit["Transformer"]["posembed_input"]["pos_embedding"][:, 0] = 0.0  # big_vision: no cls slot
  entries = weights.vit_npz_entries(src_vit, "big_vision")
  assert entries["pos_embedding"].shape == (1, 64, 64)
  # Stack the blocks as big_vision's scanned checkpoints do.
  scanned = {}
  for key in [k for k in entries if k.startswith("Transformer/encoderblock_0/")]:
    rest = key.split("/", 2)[2]
    scanned[f"Transformer/encoderblock/{rest}"] = np.stack(
      [entries.pop(f"Transformer/encoderblock_{i}/{rest}") for i in range(2)]
    )
  np.savez(tmp_path / "bv.npz", **entries, **scanned)
  loaded = weights.load_vit_npz(tmp_path / "bv.npz", dst)
  _assert_trees_equal(loaded["vit"], src_vit)


@pytest.mark.slow
def test_vit_npz_errors(tmp_path, two_inits):
  src, dst = two_inits
  with pytest.raises(FileNotFoundError, match="not found"):
    weights.load_vit_npz(tmp_path / "missing.npz", dst)
  entries = weights.vit_npz_entries(src["vit"])
  del entries["cls"]
  np.savez(tmp_path / "bad.npz", **entries)
  with pytest.raises(ValueError, match="'cls'"):
    weights.load_vit_npz(tmp_path / "bad.npz", dst)


def test_resample_posemb():
  # A table that is linear in (row, col) stays linear under bilinear resizing (interior points).
  g = 4
  rows, cols = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
  table = np.stack([rows, cols], -1).reshape(1, g * g, 2).astype(np.float32)
  table = np.concatenate([np.full((1, 1, 2), 7.0, np.float32), table], axis=1)
  same = weights.resample_posemb(table, 4, 1)
  np.testing.assert_array_equal(same, table)
  up = weights.resample_posemb(table, 8, 1)
  assert up.shape == (1, 65, 2) and np.all(up[0, 0] == 7.0)
  grid = up[0, 1:].reshape(8, 8, 2)
  # Half-pixel centres: new pixel i samples old coordinate (i + 0.5) / 2 - 0.5.
  want = (np.arange(1, 7) + 0.5) / 2 - 0.5
  np.testing.assert_allclose(grid[1:7, 3, 0], want, atol=1e-5)
  np.testing.assert_allclose(grid[3, 1:7, 1], want, atol=1e-5)


@pytest.mark.slow
def test_t5x_tree_maps_with_2d_attention_kernels(two_inits):
  src, dst = two_inits
  t5x = {}
  for part in ("token_embedder", "encoder", "decoder"):
    flat = flax.traverse_util.flatten_dict(src[part], sep="/")
    for key, value in list(flat.items()):
      if re.search(r"(query|key|value)/kernel$", key):
        flat[key] = value.reshape(value.shape[0], -1)  # T5X: [embed, heads*kv]
      elif key.endswith("out/kernel"):
        flat[key] = value.reshape(-1, value.shape[-1])  # T5X: [heads*kv, embed]
    t5x[part] = flax.traverse_util.unflatten_dict(flat, sep="/")
  assert t5x["encoder"]["layers_0"]["attention"]["query"]["kernel"].shape == (64, 64)
  loaded = weights.load_t5x_params(t5x, dst)
  for part in ("token_embedder", "encoder", "decoder"):
    _assert_trees_equal(loaded[part], src[part])
  _assert_trees_equal(loaded["vit"], dst["vit"])
  del t5x["decoder"]["decoder_norm"]
  with pytest.raises(ValueError, match="decoder_norm"):
    weights.load_t5x_params(t5x, dst)
