"""Feature converters: RAHF task features -> the model features of rahf_jax/features.py.

They follow seqio's FeatureConverter contract, so t5x can use them as FEATURE_CONVERTER_CLS:

  TASK_FEATURES  = inputs, targets (int32 token ids; their lengths come from
                   task_feature_lengths, the usual {"inputs": Lp, "targets": Lt})
  MODEL_FEATURES = prompt_ids [Lp], decoder_input_ids / decoder_target_ids /
                   decoder_loss_weights [Lt], image [S, S, 3], and per variant
                   heatmap_<h> [Ho, Ho] + score_<s> [] (multi-head) or
                   output_type [] + heatmap [Ho, Ho] + score [] (augmented prompt).

The non-token task features (image, heatmaps, scores, output_type, decoder_weight) are read
from the task's examples without being listed in TASK_FEATURES, so task_feature_lengths needs
only the two token lengths. Token features are trimmed/padded with PAD_ID to those lengths
(the task already ends them with EOS_ID, also after trimming). Decoder loss weights are 1 on
real target tokens (EOS included) times the example's `decoder_weight` (0 when the word labels
are invalid, and on every non-words example of the augmented variant).

Image and heatmap sizes are whatever the task produced; `get_model_feature_lengths` reports
them once a dataset has been converted, or from the `image_size`/`heatmap_size` arguments.
Packing is not supported (one image per example).

Copy plan (`copy_plan=True`, the t5x adapter's constrained decoding): the task's examples also
carry `copy_ids` (int32 [n], the prompt's words' tokens then EOS) and `copy_can_mark` (int32
[n], 1 where the `_0` mark may precede copy_ids[j]), as rahf_jax.t5x.tasks adds them (from
rahf_jax.inference.prompt_copy.copy_plan). They are fitted to the target length Lt as
`copy_plan(prompts, tokenizer, Lt)` fits them (a longer plan keeps Lt - 1 tokens and EOS, the
marks' places up to Lt; PAD and 0 after) and emitted as the model features copy_ids [Lt] and
can_mark [Lt] (int32).
"""

from collections.abc import Mapping

import seqio
import tensorflow as tf

from rahf_jax import features as F

FeatureSpec = seqio.FeatureConverter.FeatureSpec

COPY_PLAN_TASK_FEATURES = ("copy_ids", "copy_can_mark")
COPY_PLAN_MODEL_FEATURES = {
  "copy_ids": FeatureSpec(dtype=tf.int32),
  "can_mark": FeatureSpec(dtype=tf.int32),
}

_TOKEN_MODEL_FEATURES = {
  "prompt_ids": FeatureSpec(dtype=tf.int32),
  "decoder_input_ids": FeatureSpec(dtype=tf.int32),
  "decoder_target_ids": FeatureSpec(dtype=tf.int32),
  "decoder_loss_weights": FeatureSpec(dtype=tf.float32),
  "image": FeatureSpec(dtype=tf.float32, rank=3),
}


class RAHFFeatureConverter(seqio.FeatureConverter):
  """The two variants' shared logic; use MultiHeadFeatureConverter/AugmentedFeatureConverter."""

  VARIANT: str = ""
  PACKING_SUPPORTED = False
  PACKING_FEATURE_DTYPES = None
  TASK_FEATURES = {
    "inputs": FeatureSpec(dtype=tf.int32),
    "targets": FeatureSpec(dtype=tf.int32),
  }
  MODEL_FEATURES: Mapping[str, FeatureSpec] = {}
  # Task features copied unchanged into the model features.
  _DENSE_FEATURES: tuple[str, ...] = ()

  def __init__(
    self,
    pack: bool = False,
    use_custom_packing_ops: bool = False,
    apply_length_check: bool = True,
    bos_id: int = F.PAD_ID,
    passthrough_features: Mapping[str, FeatureSpec] | None = None,
    image_size: int | None = None,
    heatmap_size: int | None = None,
    copy_plan: bool = False,
  ):
    """`copy_plan`: also emit the copy plan's copy_ids and can_mark (module docstring)."""
    if pack:
      raise ValueError(
        f"{type(self).__name__} does not support packing (one image per example); "
        "set pack=False (t5x: train/infer_eval dataset_cfg.pack = False)."
      )
    if not self.MODEL_FEATURES:
      raise TypeError("Use MultiHeadFeatureConverter or AugmentedFeatureConverter.")
    super().__init__(
      pack=False,
      use_custom_packing_ops=use_custom_packing_ops,
      apply_length_check=apply_length_check,
      bos_id=bos_id,
      passthrough_features=passthrough_features,
    )
    self._image_size = image_size
    self._heatmap_size = heatmap_size
    self._copy_plan = bool(copy_plan)
    if self._copy_plan:
      self.MODEL_FEATURES = {**type(self).MODEL_FEATURES, **COPY_PLAN_MODEL_FEATURES}

  def _check_dense_features(self, ds: tf.data.Dataset) -> None:
    """Checks the non-token task features and records the image/heatmap sizes."""
    spec = ds.element_spec
    needed = ("image", "decoder_weight") + self._DENSE_FEATURES
    missing = [k for k in needed if k not in spec]
    if missing:
      raise ValueError(
        f"{type(self).__name__}: the task output lacks {missing}; use a {self.VARIANT} "
        "RAHF task from rahf_jax.data.tasks (or the matching converter for the variant)."
      )
    missing = [k for k in COPY_PLAN_TASK_FEATURES if self._copy_plan and k not in spec]
    if missing:
      raise ValueError(
        f"{type(self).__name__}(copy_plan=True): the task output lacks the copy plan {missing}; "
        "use a task of rahf_jax.t5x.tasks (they carry it), or free decoding "
        "(RAHFModel.decoding = 'free')."
      )
    image_size = spec["image"].shape[0]
    heatmap_key = next(k for k in self._DENSE_FEATURES if k.startswith("heatmap"))
    heatmap_size = spec[heatmap_key].shape[0]
    for name, given, found in (
      ("image_size", self._image_size, image_size),
      ("heatmap_size", self._heatmap_size, heatmap_size),
    ):
      if found is None:
        raise ValueError(f"{type(self).__name__}: the task's {name} is not static.")
      if given is not None and given != found:
        raise ValueError(
          f"{type(self).__name__}: {name}={given} but the task produces {found}; "
          "pass the task's size or none."
        )
    self._image_size, self._heatmap_size = image_size, heatmap_size

  def _convert_example(self, ex: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    targets = ex["targets"]
    weights = seqio.non_padding_position(targets, dtype=tf.float32, pad_id=F.PAD_ID)
    out = {
      "prompt_ids": ex["inputs"],
      "decoder_target_ids": targets,
      "decoder_input_ids": seqio.utils.make_autoregressive_inputs(targets, bos_id=self.bos_id),
      "decoder_loss_weights": weights * tf.cast(ex["decoder_weight"], tf.float32),
      "image": ex["image"],
    }
    for k in self._DENSE_FEATURES:
      out[k] = ex[k]
    for k in self._passthrough_features:
      out[k] = ex[k]
    return out

  def _convert_features(
    self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    """Pads/trims the token features and maps task features to model features."""
    self._check_dense_features(ds)
    ds = seqio.utils.trim_and_pad_dataset(ds, task_feature_lengths)
    if not self._copy_plan:
      return ds.map(self._convert_example, num_parallel_calls=tf.data.AUTOTUNE)
    length = task_feature_lengths["targets"]

    def convert(ex):
      out = self._convert_example(ex)
      out["copy_ids"], out["can_mark"] = fit_copy_plan(ex["copy_ids"], ex["copy_can_mark"], length)
      return out

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> dict[str, int]:
    """Model feature lengths: token lengths from the task lengths, image/heatmap sizes."""
    if self._image_size is None or self._heatmap_size is None:
      raise ValueError(
        f"{type(self).__name__}: image/heatmap sizes are unknown; pass image_size and "
        "heatmap_size, or convert a dataset first."
      )
    lp, lt = task_feature_lengths["inputs"], task_feature_lengths["targets"]
    lengths = {
      "prompt_ids": lp,
      "decoder_input_ids": lt,
      "decoder_target_ids": lt,
      "decoder_loss_weights": lt,
      "image": self._image_size,
    }
    for k in self._DENSE_FEATURES:
      # Heatmaps have a length (their height); scalars have none (seqio skips rank 0).
      lengths[k] = self._heatmap_size if k.startswith("heatmap") else 1
    for k in self._passthrough_features:
      lengths[k] = task_feature_lengths[k]
    if self._copy_plan:
      lengths.update({k: lt for k in COPY_PLAN_MODEL_FEATURES})
    return lengths


def fit_copy_plan(copy_ids: tf.Tensor, can_mark: tf.Tensor, length: int
                  ) -> tuple[tf.Tensor, tf.Tensor]:  # fmt: skip
  """A copy plan (copy_ids, can_mark: [n]) fitted to `length`: int32 [length] each. A plan longer
  than `length` keeps length - 1 tokens then EOS (copy_plan's truncation) and can_mark's first
  `length` places; PAD / 0 after."""
  ids = tf.cast(copy_ids, tf.int32)
  can_mark = tf.cast(can_mark, tf.int32)[:length]
  truncated = tf.concat([ids[: length - 1], tf.constant([F.EOS_ID], tf.int32)], axis=0)
  ids = tf.cond(tf.size(ids) > length, lambda: truncated, lambda: ids)
  ids = tf.pad(ids, [[0, length - tf.size(ids)]], constant_values=F.PAD_ID)
  can_mark = tf.pad(can_mark, [[0, length - tf.size(can_mark)]])
  return tf.ensure_shape(ids, (length,)), tf.ensure_shape(can_mark, (length,))


class MultiHeadFeatureConverter(RAHFFeatureConverter):
  """Multi-head variant: every example carries all seven targets."""

  VARIANT = F.MULTI_HEAD
  _DENSE_FEATURES = tuple(f"heatmap_{h}" for h in F.HEATMAP_TYPES) + tuple(
    f"score_{s}" for s in F.SCORE_TYPES
  )
  MODEL_FEATURES = {
    **_TOKEN_MODEL_FEATURES,
    **{f"heatmap_{h}": FeatureSpec(dtype=tf.float32, rank=2) for h in F.HEATMAP_TYPES},
    **{f"score_{s}": FeatureSpec(dtype=tf.float32, rank=0) for s in F.SCORE_TYPES},
  }


class AugmentedFeatureConverter(RAHFFeatureConverter):
  """Augmented-prompt variant: one example per (image, prompt, output type)."""

  VARIANT = F.AUGMENTED_PROMPT
  _DENSE_FEATURES = ("output_type", "heatmap", "score")
  MODEL_FEATURES = {
    **_TOKEN_MODEL_FEATURES,
    "output_type": FeatureSpec(dtype=tf.int32, rank=0),
    "heatmap": FeatureSpec(dtype=tf.float32, rank=2),
    "score": FeatureSpec(dtype=tf.float32, rank=0),
  }


CONVERTERS = {
  F.MULTI_HEAD: MultiHeadFeatureConverter,
  F.AUGMENTED_PROMPT: AugmentedFeatureConverter,
}


def converter_for(variant: str, **kwargs) -> RAHFFeatureConverter:
  """The feature converter of a variant (features.MULTI_HEAD or features.AUGMENTED_PROMPT)."""
  if variant not in CONVERTERS:
    raise ValueError(f"Unknown variant {variant!r}; use one of {tuple(CONVERTERS)}.")
  return CONVERTERS[variant](**kwargs)
