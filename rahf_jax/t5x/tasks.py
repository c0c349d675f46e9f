"""SeqIO tasks for t5x runs: the data layer's RichHF-18K tasks sized for a model, with metrics.

Importing this module registers, for every model size and variant, the task

  richhf18k_<variant>_<size>_<vocabulary>_t5x     e.g. richhf18k_multihead_tiny_demo_t5x,
                                                  richhf18k_augmented_B16_t5base_384_t5_t5x

at the size's image and heatmap resolution, with the size's vocabulary (the largest named one
its embedding holds: "demo" for tiny, "t5" for the T5-base sizes) over the TFDS data dir in
$RAHF_DATA_DIR (TFDS's default when unset), and with

  postprocess_fn = rahf_jax.inference.postprocess.seqio_postprocess_fn  (targets -> dicts of
                   ground-truth scores, heatmaps and the `_0`-marked prompt)
  metric_fns     = [rahf_jax.evaluation.seqio_metrics.seqio_metric_fn]     (decoded prompt + aux
                   scores/heatmaps -> the paper's metrics, rahf_jax.evaluation.seqio_metrics)

and the copy plan of constrained decoding as two more task features (`add_copy_plan`):

  copy_ids       int32 [n]  the prompt's words' tokens, then EOS
  copy_can_mark  int32 [n]  1 where the `_0` mark may precede copy_ids[j] (after a word)

built by rahf_jax.inference.prompt_copy.copy_plan from the prompt the model reads (its encoder
ids decoded, an augmented prompt's type prefix removed), as the native Predictor builds it when
it evaluates a batch. The adapter's converter (rahf_jax.data.feature_converter, copy_plan=True)
fits them to the target length as the model features copy_ids and can_mark.

So t5x finds them the usual way: --gin.MIXTURE_OR_TASK_MODULE="'rahf_jax.t5x.tasks'"
--gin.MIXTURE_OR_TASK_NAME="'richhf18k_multihead_tiny_demo_t5x'". Nothing is read at import.

`rahf_task(...)` registers (again) the task of a training config or of explicit arguments,
e.g. with another data dir or vocabulary, and returns its name, so gin can bind it where t5x
expects a task name (configs/t5x/runs/*.gin):

  MIXTURE_OR_TASK_NAME = @rahf_tasks.rahf_task()
  rahf_tasks.rahf_task.run_config = %RUN_CONFIG

Needs SeqIO (not t5x).
"""

import logging

import numpy as np
import tensorflow as tf

from rahf_jax import features
from rahf_jax.data import tasks as data_tasks
from rahf_jax.data import vocab as data_vocab
from rahf_jax.evaluation import seqio_metrics
from rahf_jax.inference import postprocess, prompt_copy
from rahf_jax.models import MODEL_SIZES, get_model_config
from rahf_jax.t5x import run_settings

SUFFIX = "_t5x"


def task_name(variant: str, size: str, vocabulary: str) -> str:
  """Name of the t5x task of a variant, model size and vocabulary name."""
  return data_tasks.task_name(variant, f"_{size}_{vocabulary}{SUFFIX}")


def default_vocabulary(size: str) -> str:
  """The largest named vocabulary (rahf_jax.data.vocab.VOCAB_SIZES) the size's model embeds."""
  vocab_size = int(get_model_config(size).vocab_size)
  fits = [(n, name) for name, n in data_vocab.VOCAB_SIZES.items() if n <= vocab_size]
  if not fits:
    raise ValueError(f"no named vocabulary fits model size {size!r} ({vocab_size} embeddings).")
  return max(fits)[1]


def example_copy_plan(input_ids: np.ndarray, tokenizer) -> tuple[np.ndarray, np.ndarray]:
  """(copy_ids, can_mark) int32 [n] of one example's encoder ids: prompt_copy.copy_plan of the
  prompt they encode (prompt_copy.prompts_from_ids), up to and with its EOS."""
  (prompt,) = prompt_copy.prompts_from_ids(np.asarray(input_ids)[None], tokenizer)
  # A piece holds at least one UTF-8 byte, or is a word's boundary piece: twice the bytes fit.
  plan = prompt_copy.copy_plan([prompt], tokenizer, 2 * len(prompt.encode("utf-8")) + 2)
  n = int(np.flatnonzero(plan.copy_ids[0] == features.EOS_ID)[0]) + 1
  return plan.copy_ids[0, :n], plan.can_mark[0, :n].astype(np.int32)


def add_copy_plan(dataset: tf.data.Dataset, output_features) -> tf.data.Dataset:
  """SeqIO preprocessor (after tokenisation): adds each example's copy_ids and copy_can_mark
  (`example_copy_plan` of its "inputs", with the targets' vocabulary)."""
  vocabulary = output_features["targets"].vocabulary

  def plan(input_ids):
    return example_copy_plan(input_ids, vocabulary.tokenizer)

  def add(ex):
    ids, can_mark = tf.numpy_function(plan, [ex["inputs"]], (tf.int32, tf.int32), stateful=False)
    return {**ex, "copy_ids": tf.ensure_shape(ids, [None]),
            "copy_can_mark": tf.ensure_shape(can_mark, [None])}  # fmt: skip

  return dataset.map(add, num_parallel_calls=tf.data.AUTOTUNE)


def rahf_task(
  variant: str | None = None,
  size: str | None = None,
  vocabulary: str | None = None,
  data_dir: str | None = None,
  run_config=None,
  copy_plan: bool = True,
) -> str:
  """Registers the t5x task for `variant` at model `size`'s resolutions; returns its name.

  Args:
    variant: "multihead" or "augmented" (default: run_config.model.variant).
    size: a rahf_jax.models.MODEL_SIZES name; fixes image_size and heatmap_size (default:
      run_config.model.size).
    vocabulary: "demo" (shipped 512-piece model, the tiny size), "t5" (32K, the T5-base
      sizes) or a .model path (default: run_config.data.vocabulary, else the size's).
    data_dir: TFDS data dir holding richhf18k (default: run_config.data.data_dir, else
      $RAHF_DATA_DIR, else TFDS's default).
    run_config: a native training config (rahf_jax.t5x.run_settings.run_config); its model
      overrides (e.g. image_size) size the task as the native trainer's.
    copy_plan: add the copy plan's task features (`add_copy_plan`).
  """
  if run_config is not None:
    config = run_settings.model_config(run_config)
    variant = variant or run_config.model.variant
    size = size or run_config.model.size
    vocabulary = vocabulary or run_config.data.vocabulary
    data_dir = data_dir or run_config.data.get("data_dir") or None
  else:
    if variant is None or size is None:
      raise ValueError("rahf_task needs variant and size, or run_config.")
    config = get_model_config(size, variant)
  vocabulary = vocabulary or default_vocabulary(size)
  name = vocabulary if vocabulary in data_vocab.VOCAB_SIZES else "custom"
  return data_tasks.register_model_task(
    variant,
    image_size=int(config.image_size),
    heatmap_size=int(config.heatmap_size),
    model_vocab_size=int(config.vocab_size),
    vocabulary=vocabulary,
    data_dir=data_dir,
    suffix=f"_{size}_{name}{SUFFIX}",
    metric_fns=[seqio_metrics.seqio_metric_fn],
    postprocess_fn=postprocess.seqio_postprocess_fn,
    extra_preprocessors=[add_copy_plan] if copy_plan else [],
  )


def register_all() -> list[str]:
  """Registers every size's and variant's task (the module docstring's names)."""
  names = []
  for size in MODEL_SIZES:
    for variant in features.VARIANTS:
      try:
        names.append(rahf_task(variant, size))
      except Exception as e:  # pylint: disable=broad-except  # importing must not fail
        logging.warning("rahf_jax.t5x.tasks: %s/%s not registered: %s", variant, size, e)
  return names


REGISTERED = register_all()
