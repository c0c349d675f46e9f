"""SeqIO preprocessors: RichHF-18K TFDS examples -> task features of both RAHF variants.

Input: examples of the TFDS dataset `richhf18k` (image uint8 [h, w, 3] of any size, prompt,
four float32 scores, two uint8 [512, 512, 1] heatmaps, target text, word_labels_valid). The
tasks read the image still encoded (tasks.media_decoders) and decode it here, so SeqIO's
in-memory cache of small splits holds compressed bytes, not pixels; small heatmaps come
already in model form from the source's `heatmap_decoder`, larger ones encoded. Decoded
examples are accepted too.

Multi-head task features (`prepare_multihead`), before tokenisation:
  image                  float32 [S, S, 3] in [-1, 1] (bilinear, antialiased; a non-square
                         image is resized to the square, not cropped, as in the reference
                         reproduction)
  heatmap_<h>            float32 [Ho, Ho] in [0, 1] (area resize of the 512x512 map, / 255)
  score_<s>              float32 []
  inputs, targets        text (the prompt; the `_0`-marked prompt), tokenised afterwards
  decoder_weight         float32 [] 1 if word_labels_valid else 0 (scales the decoder loss)
  uid                    text (kept for evaluation; the feature converter drops it)

Augmented-prompt task features (`prepare_multihead` then `expand_augmented`): every example
becomes len(AUGMENTED_OUTPUT_TYPES) examples, one per output type t, in that order, with
  inputs = features.augmented_prompt(t, prompt)    e.g. "SCORE: aesthetics | a red cube"
  output_type = index of t, heatmap = the map of t (zeros for other types),
  score = the score of t (0 for other types),
  decoder_weight = word_labels_valid for WORDS_TYPE, 0 for every other type.
"""

import functools

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from rahf_jax import features as F

# Value ranges of the stored data.
HEATMAP_MAX = 255.0


def decode_if_encoded(image: tf.Tensor, channels: int) -> tf.Tensor:
  """Decodes encoded image bytes (JPEG/PNG/...) to uint8 [h, w, channels]; passes pixels on."""
  if image.dtype != tf.string:
    return image
  image = tf.io.decode_image(image, channels=channels, expand_animations=False)
  return tf.ensure_shape(image, (None, None, channels))


def image_to_model(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """uint8 [h, w, 3] (or its encoded bytes) -> float32 [image_size, image_size, 3] in [-1, 1]."""
  image = decode_if_encoded(image, channels=3)
  image = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
  image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
  image = tf.clip_by_value(image, 0.0, 1.0) * 2.0 - 1.0
  return tf.ensure_shape(image, (image_size, image_size, 3))


def heatmap_to_model(heatmap: tf.Tensor, heatmap_size: int) -> tf.Tensor:
  """uint8 [512, 512, 1] (or PNG bytes) -> float32 [heatmap_size, heatmap_size] in [0, 1].

  A float32 map is already in model form (made by `heatmap_decoder` in the data source) and is
  passed on; its size must be heatmap_size.
  """
  if heatmap.dtype == tf.float32:
    return tf.ensure_shape(heatmap, (heatmap_size, heatmap_size))
  heatmap = decode_if_encoded(heatmap, channels=1)
  heatmap = tf.cast(heatmap, tf.float32) / HEATMAP_MAX
  if heatmap.shape.rank == 2:
    heatmap = heatmap[..., None]
  heatmap = tf.image.resize(heatmap, (heatmap_size, heatmap_size), method="area")
  heatmap = tf.clip_by_value(heatmap[..., 0], 0.0, 1.0)
  return tf.ensure_shape(heatmap, (heatmap_size, heatmap_size))


@tfds.decode.make_decoder(output_dtype=tf.float32)
def heatmap_decoder(serialized: tf.Tensor, feature, heatmap_size: int) -> tf.Tensor:
  """A TFDS decoder of a stored heatmap (PNG bytes) straight to its model form, `heatmap_to_model`.

  `heatmap_decoder(heatmap_size=32)` in a source's decoders makes the source yield the float32
  [32, 32] map, so an in-memory cache of the source holds maps that no epoch decodes again.
  """
  del feature  # the stored Image feature; the bytes are decoded as heatmap_to_model does
  return heatmap_to_model(serialized, heatmap_size)


def _prepare_example(ex, image_size: int, heatmap_size: int):
  out = {
    "image": image_to_model(ex["image"], image_size),
    "inputs": ex["prompt"],
    "targets": ex["target"],
    "decoder_weight": tf.cast(ex["word_labels_valid"], tf.float32),
    "uid": ex["uid"],
  }
  for h in F.HEATMAP_TYPES:
    out[f"heatmap_{h}"] = heatmap_to_model(ex[f"heatmap_{h}"], heatmap_size)
  for s in F.SCORE_TYPES:
    out[f"score_{s}"] = tf.cast(ex[s], tf.float32)
  return out


def prepare_multihead(ds: tf.data.Dataset, *, image_size: int, heatmap_size: int):
  """TFDS examples -> multi-head task features (text not yet tokenised)."""
  fn = functools.partial(_prepare_example, image_size=image_size, heatmap_size=heatmap_size)
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def _augmented_example(ex, index: tf.Tensor):
  """The `index`-th output type's example of one multi-head example."""
  types = F.AUGMENTED_OUTPUT_TYPES
  prefixes = tf.constant([F.augmented_prompt(t, "") for t in types])
  heatmaps = tf.stack(
    [
      ex[f"heatmap_{t}"]
      if t in F.HEATMAP_TYPES
      else tf.zeros_like(ex["heatmap_" + F.HEATMAP_TYPES[0]])
      for t in types
    ]
  )
  scores = tf.stack([ex[f"score_{t}"] if t in F.SCORE_TYPES else tf.constant(0.0) for t in types])
  is_words = tf.equal(index, types.index(F.WORDS_TYPE))
  return {
    "image": ex["image"],
    "inputs": tf.strings.join([prefixes[index], ex["inputs"]]),
    "targets": ex["targets"],
    "output_type": tf.cast(index, tf.int32),
    "heatmap": heatmaps[index],
    "score": scores[index],
    "decoder_weight": tf.where(is_words, ex["decoder_weight"], 0.0),
    "uid": ex["uid"],
  }


def expand_augmented(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Multi-head examples -> one augmented-prompt example per output type (in order)."""
  num_types = len(F.AUGMENTED_OUTPUT_TYPES)

  def expand(ex):
    indices = tf.data.Dataset.range(num_types)
    return indices.map(lambda i: _augmented_example(ex, tf.cast(i, tf.int32)))

  return ds.flat_map(expand)


def multihead_preprocessors(*, image_size: int, heatmap_size: int) -> list:
  """The multi-head task's preprocessor list (SeqIO order: prepare, tokenise, EOS)."""
  return [
    functools.partial(prepare_multihead, image_size=image_size, heatmap_size=heatmap_size),
    seqio.preprocessors.tokenize,
    seqio.preprocessors.append_eos_after_trim,
  ]


def augmented_preprocessors(*, image_size: int, heatmap_size: int) -> list:
  """The augmented-prompt task's preprocessor list (expansion happens before tokenising)."""
  return [
    functools.partial(prepare_multihead, image_size=image_size, heatmap_size=heatmap_size),
    expand_augmented,
    seqio.preprocessors.tokenize,
    seqio.preprocessors.append_eos_after_trim,
  ]
