"""SeqIO tasks over the TFDS dataset `richhf18k`, one per RAHF variant.

`register_tasks(data_dir=..., image_size=..., heatmap_size=..., vocabulary=..., suffix=...)`
registers (or re-registers, so it is idempotent)

  richhf18k_multihead<suffix>   one example per (image, prompt), all seven targets
  richhf18k_augmented<suffix>   one example per (image, prompt, output type): the output type is
                                written in front of the prompt as
                                features.augmented_prompt(type, prompt), e.g.
                                "HEATMAP: implausibility | a red cube on grass"

and returns {variant: task name}. The tasks' features are described in preprocessors.py; the
feature converters in feature_converter.py turn them into model features.

Importing this module (or rahf_jax.data) registers two default pairs; nothing is read at
import (no data, no vocabulary file), and a pair that cannot be registered is logged, not
raised:

  richhf18k_multihead, richhf18k_augmented            T5 vocabulary, image 384, heatmaps 384
                                                      (the 384 model sizes of models/variants.py)
  richhf18k_multihead_demo, richhf18k_augmented_demo  demo vocabulary, image 128, heatmaps 32
                                                      (the "tiny" model size, the demo's)

both over the TFDS data dir in $RAHF_DATA_DIR (TFDS's default data dir when unset). Call
register_tasks again with your own data dir and sizes to override them or add more.

Metric functions: the evaluation code attaches seqio metric functions and their
postprocessor through the `metric_fns` and `postprocess_fn` arguments (rahf_jax/t5x/tasks.py
does); the default registrations have none.
"""

import logging
import os
from collections.abc import Callable, Mapping, Sequence

import seqio
import tensorflow_datasets as tfds

from rahf_jax import features as F
from rahf_jax.data import preprocessors, vocab

TFDS_NAME = "richhf18k"
TFDS_VERSION = "1.1.0"  # richhf18k_dataset_builder.Builder.VERSION
TASK_PREFIX = "richhf18k"
DEFAULT_SHUFFLE_BUFFER_SIZE = 256
DATA_DIR_ENV = "RAHF_DATA_DIR"

MEDIA_FEATURES = ("image",) + tuple(f"heatmap_{h}" for h in F.HEATMAP_TYPES)
# SeqIO keeps a split of under 10,000 examples in memory as its source yields them, and the
# preprocessors decode the media again every epoch. Heatmaps of at most this size are decoded
# and resized by the source instead, so that cache holds them in model form (float32, 32 KB per
# example at 64x64): decoding and area-resizing a stored 512x512 PNG map takes about 1.5 ms, and
# the demo's two maps were 40% of its input pipeline's time. Larger maps and the image stay
# encoded (a few KB each) and are decoded by the preprocessors.
MAX_SOURCE_DECODED_HEATMAP_SIZE = 64
# The "tiny" model size's input and heatmap resolutions (rahf_jax/models/variants.py), which the
# default `_demo` tasks are sized for.
DEMO_IMAGE_SIZE, DEMO_HEATMAP_SIZE = 128, 32


def media_decoders(heatmap_size: int | None = None) -> dict:
  """TFDS decoders that leave the image encoded, and the heatmaps too unless `heatmap_size` is
  at most MAX_SOURCE_DECODED_HEATMAP_SIZE (then they come out in model form, float32
  [heatmap_size, heatmap_size], from preprocessors.heatmap_decoder)."""
  decoders = {k: tfds.decode.SkipDecoding() for k in MEDIA_FEATURES}
  if heatmap_size is not None and heatmap_size <= MAX_SOURCE_DECODED_HEATMAP_SIZE:
    for h in F.HEATMAP_TYPES:
      decoders[f"heatmap_{h}"] = preprocessors.heatmap_decoder(heatmap_size=heatmap_size)
  return decoders


def load_vocabularies(dataset, output_features):
  """A SeqIO preprocessor that reads the features' vocabularies before any map is traced.

  So an unreadable vocabulary (vocab.VocabularyUnavailableError) surfaces as its own one-line
  error when a task is used, not wrapped in a tf.data tracing error. Returns `dataset` as is.
  """
  for feature in output_features.values():
    load_model = getattr(feature.vocabulary, "load_model", None)  # SentencePiece vocabularies
    if load_model is not None:
      load_model()
  return dataset


# Task name -> variant, for every task registered here.
_TASK_VARIANTS: dict[str, str] = {}
# Task name -> its source with the media as stored (stored_source).
_STORED_SOURCES: dict[str, seqio.DataSource] = {}


def stored_source(name: str) -> seqio.DataSource:
  """The data source of a task registered here with every medium as stored (the encoded image
  and 512x512 maps), for references that need the stored maps (evaluation.raw_examples)."""
  variant_of(name)  # registered here, or a clear error
  return _STORED_SOURCES[name]


def task_name(variant: str, suffix: str = "") -> str:
  """The registered name of a variant's task."""
  if variant not in F.VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; use one of {F.VARIANTS}.")
  return f"{TASK_PREFIX}_{variant}{suffix}"


def variant_of(name: str) -> str:
  """The variant (features.MULTI_HEAD or features.AUGMENTED_PROMPT) of a task registered here."""
  if name not in _TASK_VARIANTS:
    raise ValueError(
      f"Task {name!r} was not registered by rahf_jax.data.tasks; call "
      f"register_tasks(...) first (registered: {sorted(_TASK_VARIANTS)})."
    )
  return _TASK_VARIANTS[name]


def register_tasks(
  *,
  data_dir: str | None,
  image_size: int,
  heatmap_size: int,
  vocabulary: seqio.Vocabulary,
  suffix: str = "",
  tfds_version: str = TFDS_VERSION,
  shuffle_buffer_size: int = DEFAULT_SHUFFLE_BUFFER_SIZE,
  metric_fns: Sequence[Callable] = (),
  postprocess_fn: Callable | None = None,
  source: seqio.DataSource | None = None,
  extra_preprocessors: Sequence[Callable] = (),
) -> dict[str, str]:
  """Registers the multi-head and augmented-prompt tasks; returns {variant: task name}.

  Args:
    data_dir: TFDS data dir holding richhf18k (None: TFDS's default).
    image_size: model input resolution (square).
    heatmap_size: heatmap head output resolution (square).
    vocabulary: SentencePiece vocabulary for prompts and targets (see vocab.py).
    suffix: appended to the task names, e.g. "_demo".
    tfds_version: version of the richhf18k dataset to read.
    shuffle_buffer_size: examples held for shuffling (after image resizing, so memory
      grows with image_size**2).
    metric_fns: seqio metric functions for evaluation (given by the evaluation code).
    postprocess_fn: seqio postprocessor applied to decoded outputs and targets before
      metric_fns (seqio passes it example=... and is_target=...).
    source: another seqio data source with richhf18k's features and splits (default: the
      TFDS dataset in data_dir).
    extra_preprocessors: seqio preprocessors run after tokenisation and EOS (e.g. the t5x
      tasks' copy plan, rahf_jax.t5x.tasks.add_copy_plan).
  """
  if image_size <= 0 or heatmap_size <= 0:
    raise ValueError(
      f"image_size and heatmap_size must be positive, got {image_size}, {heatmap_size}."
    )
  stored = source
  if source is None:

    def tfds_source(decoders):
      return seqio.TfdsDataSource(
        tfds_name=f"{TFDS_NAME}:{tfds_version}", tfds_data_dir=data_dir, decoders=decoders
      )

    source, stored = tfds_source(media_decoders(heatmap_size)), tfds_source(media_decoders())
  output_features = {
    "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
    "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True),
  }
  builders = {
    F.MULTI_HEAD: preprocessors.multihead_preprocessors,
    F.AUGMENTED_PROMPT: preprocessors.augmented_preprocessors,
  }
  names = {}
  for variant, make_preprocessors in builders.items():
    name = task_name(variant, suffix)
    if name in seqio.TaskRegistry.names():
      seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
      name,
      source=source,
      preprocessors=[
        load_vocabularies,
        *make_preprocessors(image_size=image_size, heatmap_size=heatmap_size),
        *extra_preprocessors,
      ],
      output_features=output_features,
      metric_fns=list(metric_fns),
      postprocess_fn=postprocess_fn,
      shuffle_buffer_size=shuffle_buffer_size,
    )
    _TASK_VARIANTS[name] = variant
    _STORED_SOURCES[name] = stored
    names[variant] = name
  return names


def register_model_task(
  variant: str,
  *,
  image_size: int,
  heatmap_size: int,
  model_vocab_size: int,
  vocabulary: str = "t5",
  data_dir: str | None = None,
  suffix: str | None = None,
  **register_kwargs,
) -> str:
  """Registers the variant's task for one model's sizes and vocabulary; returns its name.

  Args:
    variant: features.MULTI_HEAD or features.AUGMENTED_PROMPT.
    image_size, heatmap_size: the model's input and heatmap resolutions.
    model_vocab_size: the model's embedding size; the vocabulary must fit in it.
    vocabulary: "t5", "demo" or a SentencePiece .model path (vocab.get_vocabulary).
    data_dir: TFDS data dir holding richhf18k (None: $RAHF_DATA_DIR, else TFDS's default).
    suffix: task-name suffix (default: "_<image_size>_<heatmap_size>_<vocabulary name>").
    **register_kwargs: passed to register_tasks (metric_fns, postprocess_fn, ...).
  """
  pieces = vocab.VOCAB_SIZES.get(vocabulary)
  vocabulary_obj = vocab.get_vocabulary(vocabulary)
  pieces = pieces or vocabulary_obj.vocab_size
  if pieces > model_vocab_size:
    raise ValueError(
      f"vocabulary {vocabulary!r} has {pieces} pieces but the model embeds {model_vocab_size}; "
      "use the matching vocabulary ('demo' for the tiny size, 't5' for the T5-base sizes)."
    )
  if suffix is None:
    name = vocabulary if vocabulary in vocab.VOCAB_SIZES else "custom"
    suffix = f"_{image_size}_{heatmap_size}_{name}"
  return register_tasks(
    data_dir=data_dir or os.environ.get(DATA_DIR_ENV) or None,
    image_size=image_size,
    heatmap_size=heatmap_size,
    vocabulary=vocabulary_obj,
    suffix=suffix,
    **register_kwargs,
  )[variant]


def registered_tasks() -> Mapping[str, str]:
  """{task name: variant} of every task registered here."""
  return dict(_TASK_VARIANTS)


def _register_defaults() -> None:
  data_dir = os.environ.get(DATA_DIR_ENV) or None
  defaults = [(384, 384, vocab.t5_vocabulary, "")]
  if os.path.exists(vocab.DEMO_VOCAB_PATH):
    defaults.append((DEMO_IMAGE_SIZE, DEMO_HEATMAP_SIZE, vocab.demo_vocabulary, "_demo"))
  for image_size, heatmap_size, make_vocabulary, suffix in defaults:
    try:
      register_tasks(
        data_dir=data_dir,
        image_size=image_size,
        heatmap_size=heatmap_size,
        vocabulary=make_vocabulary(),
        suffix=suffix,
      )
    except Exception as e:  # pylint: disable=broad-except  # importing must not fail
      logging.warning("rahf_jax.data.tasks: default tasks%s not registered: %s", suffix, e)


_register_defaults()
