"""Losses against a hand-written numpy reference (both variants, masks, weights).

Inputs and losses are float64 (the losses follow their inputs' precision), so the reference's
summation order, which differs from XLA's, cannot matter at the tolerance below.
"""

import jax
import numpy as np
import pytest

from rahf_jax import features
from rahf_jax.train import losses

B, H, W, L, V = 5, 4, 3, 6, 7
DTYPE = np.float64
# Every summed term is non-negative (squared errors, per-token cross-entropies logz - logit), so
# each sum of n terms is within about n * eps of the exact value in any order; n <= B * H * W = 60
# here, plus a few eps for exp/log: 256 float64 eps (5.7e-14) bounds it. A wrong mask or weight
# changes a loss by a whole term, >= 1e-3 of it.
_RTOL = 256 * float(np.finfo(np.float64).eps)


@pytest.fixture(autouse=True)
def _float64():
  with jax.enable_x64(True):
    yield


def _np_ce(logits, targets, weights):
  """Reference token cross-entropy, one token at a time."""
  total, count = 0.0, 0.0
  for b in range(logits.shape[0]):
    for t in range(logits.shape[1]):
      if weights[b, t] == 0:
        continue
      row = logits[b, t].astype(np.float64)
      logz = np.log(np.sum(np.exp(row - row.max()))) + row.max()
      total += weights[b, t] * (logz - row[targets[b, t]])
      count += weights[b, t]
  return total / max(count, 1.0)


def _text(rng):
  logits = rng.normal(size=(B, L, V)).astype(DTYPE)
  targets = rng.integers(0, V, size=(B, L)).astype(np.int32)
  weights = (rng.uniform(size=(B, L)) < 0.6).astype(DTYPE)
  return logits, targets, weights


def test_multihead_matches_numpy_reference():
  rng = np.random.default_rng(0)
  logits, targets, weights = _text(rng)
  batch = {"decoder_target_ids": targets, "decoder_loss_weights": weights}
  outputs = {"decoder_logits": logits, "heatmaps": {}, "scores": {}}
  for h in features.HEATMAP_TYPES:
    outputs["heatmaps"][h] = rng.uniform(size=(B, H, W)).astype(DTYPE)
    batch[f"heatmap_{h}"] = rng.uniform(size=(B, H, W)).astype(DTYPE)
  for s in features.SCORE_TYPES:
    outputs["scores"][s] = rng.uniform(size=(B,)).astype(DTYPE)
    batch[f"score_{s}"] = rng.uniform(size=(B,)).astype(DTYPE)
  lw = {"heatmap": 2.0, "score": 0.5, "text": 3.0, "aesthetics": 4.0}

  loss, aux = losses.compute_losses(outputs, batch, features.MULTI_HEAD, lw)
  assert loss.dtype == DTYPE

  ref_h = {h: np.mean((outputs["heatmaps"][h] - batch[f"heatmap_{h}"]) ** 2) for h in
           features.HEATMAP_TYPES}  # fmt: skip
  ref_s = {s: np.mean((outputs["scores"][s] - batch[f"score_{s}"]) ** 2) for s in
           features.SCORE_TYPES}  # fmt: skip
  ref_ce = _np_ce(logits, targets, weights)
  ref = 2.0 * sum(ref_h.values()) + 3.0 * ref_ce
  ref += sum((4.0 if s == "aesthetics" else 0.5) * v for s, v in ref_s.items())
  np.testing.assert_allclose(float(loss), ref, rtol=_RTOL)
  np.testing.assert_allclose(float(aux["text_loss"]), ref_ce, rtol=_RTOL)
  np.testing.assert_allclose(float(aux["num_tokens"]), weights.sum())
  for h, v in ref_h.items():
    np.testing.assert_allclose(float(aux[f"heatmap_{h}"]), v, rtol=_RTOL)
  for s, v in ref_s.items():
    np.testing.assert_allclose(float(aux[f"score_{s}"]), v, rtol=_RTOL)


def test_multihead_example_weights_drop_padded_rows():
  rng = np.random.default_rng(1)
  logits, targets, weights = _text(rng)
  batch = {"decoder_target_ids": targets, "decoder_loss_weights": weights}
  outputs = {"decoder_logits": logits, "heatmaps": {}, "scores": {}}
  for h in features.HEATMAP_TYPES:
    outputs["heatmaps"][h] = rng.uniform(size=(B, H, W)).astype(DTYPE)
    batch[f"heatmap_{h}"] = rng.uniform(size=(B, H, W)).astype(DTYPE)
  for s in features.SCORE_TYPES:
    outputs["scores"][s] = rng.uniform(size=(B,)).astype(DTYPE)
    batch[f"score_{s}"] = rng.uniform(size=(B,)).astype(DTYPE)
  lw = {"heatmap": 1.0, "score": 1.0, "text": 1.0}
  ex_w = np.array([1, 1, 1, 0, 0], DTYPE)
  loss, _ = losses.compute_losses(outputs, batch, features.MULTI_HEAD, lw, ex_w)

  def cut(tree):
    if isinstance(tree, dict):
      return {k: cut(v) for k, v in tree.items()}
    return tree[:3]

  ref, _ = losses.compute_losses(cut(outputs), cut(batch), features.MULTI_HEAD, lw)
  np.testing.assert_allclose(float(loss), float(ref), rtol=_RTOL)


def test_augmented_only_own_output_type_counts():
  rng = np.random.default_rng(2)
  types = features.AUGMENTED_OUTPUT_TYPES
  b = 2 * len(types)
  otype = np.array(list(range(len(types))) * 2, np.int32)
  logits = rng.normal(size=(b, L, V)).astype(DTYPE)
  targets = rng.integers(0, V, size=(b, L)).astype(np.int32)
  words = np.array([types[t] == features.WORDS_TYPE for t in otype], DTYPE)
  weights = (rng.uniform(size=(b, L)) < 0.7).astype(DTYPE) * words[:, None]
  weights[otype == types.index(features.WORDS_TYPE), 0] = 1.0
  outputs = {
    "heatmap": rng.uniform(size=(b, H, W)).astype(DTYPE),
    "score": rng.uniform(size=(b,)).astype(DTYPE),
    "decoder_logits": logits,
  }
  batch = {
    "output_type": otype,
    "heatmap": rng.uniform(size=(b, H, W)).astype(DTYPE),
    "score": rng.uniform(size=(b,)).astype(DTYPE),
    "decoder_target_ids": targets,
    "decoder_loss_weights": weights,
  }
  lw = {"heatmap": 1.0, "score": 1.0, "text": 0.5, "misalignment": 3.0, "overall": 2.0}
  ex_w = np.ones((b,), DTYPE)
  ex_w[-1] = 0.0  # the last example (misaligned words) is padding
  loss, aux = losses.compute_losses(outputs, batch, features.AUGMENTED_PROMPT, lw, ex_w)

  # Reference: loop over examples, each contributes only its own type's error.
  h_num = h_den = s_num = s_den = 0.0
  for i in range(b):
    if ex_w[i] == 0:
      continue
    name = types[otype[i]]
    w = lw.get(name, 1.0)
    if name in features.HEATMAP_TYPES:
      h_num += w * np.mean((outputs["heatmap"][i] - batch["heatmap"][i]) ** 2)
      h_den += 1
    elif name in features.SCORE_TYPES:
      s_num += w * (outputs["score"][i] - batch["score"][i]) ** 2
      s_den += 1
  ce = _np_ce(logits, targets, weights * ex_w[:, None])
  np.testing.assert_allclose(float(aux["heatmap_loss"]), h_num / h_den, rtol=_RTOL)
  np.testing.assert_allclose(float(aux["score_loss"]), s_num / s_den, rtol=_RTOL)
  np.testing.assert_allclose(float(aux["text_loss"]), ce, rtol=_RTOL)
  np.testing.assert_allclose(float(loss), h_num / h_den + s_num / s_den + 0.5 * ce, rtol=_RTOL)
  i = types.index("aesthetics")
  sel = otype == i
  ref = np.mean((outputs["score"][sel] - batch["score"][sel]) ** 2)
  np.testing.assert_allclose(float(aux["score_aesthetics"]), ref, rtol=_RTOL)


def test_augmented_batch_without_heatmap_examples_has_zero_heatmap_loss():
  rng = np.random.default_rng(3)
  otype = np.full((3,), features.AUGMENTED_OUTPUT_TYPES.index("overall"), np.int32)
  outputs = {
    "heatmap": rng.uniform(size=(3, H, W)).astype(DTYPE),
    "score": np.array([0.1, 0.2, 0.3], DTYPE),
    "decoder_logits": rng.normal(size=(3, L, V)).astype(DTYPE),
  }
  batch = {
    "output_type": otype,
    "heatmap": np.zeros((3, H, W), DTYPE),
    "score": np.array([0.1, 0.4, 0.0], DTYPE),
    "decoder_target_ids": np.zeros((3, L), np.int32),
    "decoder_loss_weights": np.zeros((3, L), DTYPE),
  }
  loss, aux = losses.compute_losses(outputs, batch, features.AUGMENTED_PROMPT, {})
  np.testing.assert_allclose(float(aux["heatmap_loss"]), 0.0)
  np.testing.assert_allclose(float(aux["text_loss"]), 0.0)
  np.testing.assert_allclose(float(loss), (0.2**2 + 0.3**2) / 3, rtol=_RTOL)


def test_unknown_variant_is_a_clear_error():
  batch = {"decoder_target_ids": np.zeros((1, 2), np.int32),
           "decoder_loss_weights": np.ones((1, 2), DTYPE)}  # fmt: skip
  with pytest.raises(ValueError, match="Unknown model variant"):
    losses.compute_losses({"decoder_logits": np.zeros((1, 2, 3))}, batch, "nope", {})


def test_bce_heatmap_loss_matches_numpy_and_its_logit_gradient_is_the_error():
  """heatmap_loss="bce": per-pixel -(y log p + (1 - y) log(1 - p)); d/dlogit = (p - y) / pixels,
  also where the squared error's gradient has vanished (p ~ 1e-9 on an annotated pixel)."""
  rng = np.random.default_rng(3)
  logits, targets, weights = _text(rng)
  batch = {"decoder_target_ids": targets, "decoder_loss_weights": weights}
  z = {h: rng.normal(0, 4, size=(B, H, W)) for h in features.HEATMAP_TYPES}
  z[features.HEATMAP_TYPES[0]][0, 0, 0] = -20.0
  for h in features.HEATMAP_TYPES:
    batch[f"heatmap_{h}"] = rng.uniform(size=(B, H, W))
    batch[f"heatmap_{h}"][0, 0, 0] = 1.0
  scores = {s: np.zeros(B) for s in features.SCORE_TYPES}
  batch.update({f"score_{s}": np.zeros(B) for s in features.SCORE_TYPES})

  def heat(z, kind):
    outputs = {"decoder_logits": logits, "scores": scores,
               "heatmaps": {h: jax.nn.sigmoid(v) for h, v in z.items()}}  # fmt: skip
    _, aux = losses.compute_losses(outputs, batch, features.MULTI_HEAD, {}, None, kind)
    return aux["heatmap_loss"], aux

  total, aux = heat(z, "bce")
  for h in features.HEATMAP_TYPES:
    p, y = 1 / (1 + np.exp(-z[h])), batch[f"heatmap_{h}"]
    ref = np.mean(-(y * np.log(p) + (1 - y) * np.log1p(-p)))
    np.testing.assert_allclose(float(aux[f"heatmap_{h}"]), ref, rtol=_RTOL)
  grads = jax.grad(lambda z: heat(z, "bce")[0])(z)
  mse_grads = jax.grad(lambda z: heat(z, "mse")[0])(z)
  h0 = features.HEATMAP_TYPES[0]
  for h in features.HEATMAP_TYPES:
    p = 1 / (1 + np.exp(-z[h]))
    np.testing.assert_allclose(grads[h], (p - batch[f"heatmap_{h}"]) / (B * H * W), rtol=1e-9)
  assert abs(float(grads[h0][0, 0, 0])) > 1e6 * abs(float(mse_grads[h0][0, 0, 0]))
  with pytest.raises(ValueError, match="heatmap loss 'l1' unknown"):
    heat(z, "l1")
