"""SeqIO tasks for t5x runs: the data layer's RichHF-18K tasks sized for a model, with metrics.

`rahf_task(variant, size, vocabulary, data_dir)` registers (idempotently) the task of
`rahf_jax.data.tasks` at the model size's image and heatmap resolution, with

  postprocess_fn = rahf_jax.inference.postprocess.seqio_postprocess_fn  (targets -> dicts of
                   ground-truth scores, heatmaps and the `_0`-marked prompt)
  metric_fns     = [rahf_jax.inference.postprocess.seqio_metric_fn]     (decoded prompt + aux
                   scores/heatmaps -> the paper's metrics, rahf_jax.evaluation.seqio_metrics)

and returns its name, so gin can bind it where t5x expects a task name:

  MIXTURE_OR_TASK_NAME = @rahf_tasks.rahf_task()
  rahf_tasks.rahf_task: variant = %VARIANT, size = %SIZE, vocabulary = 'demo'

Needs SeqIO (not t5x). The TFDS data dir defaults to $RAHF_DATA_DIR, then TFDS's default.
"""

from rahf_jax.data import tasks as data_tasks
from rahf_jax.inference import postprocess
from rahf_jax.models import get_model_config


def task_name(variant: str, size: str, vocabulary: str) -> str:
  """Name of the t5x task of a variant, model size and vocabulary name."""
  return data_tasks.task_name(variant, f"_{size}_{vocabulary}_t5x")


def rahf_task(
  variant: str,
  size: str = "tiny",
  vocabulary: str = "demo",
  data_dir: str | None = None,
) -> str:
  """Registers the t5x task for `variant` at model `size`'s resolutions; returns its name.

  Args:
    variant: "multihead" or "augmented".
    size: a rahf_jax.models.MODEL_SIZES name; fixes image_size and heatmap_size.
    vocabulary: "demo" (shipped 512-piece model, the tiny size) or "t5" (32K, real sizes).
    data_dir: TFDS data dir holding richhf18k; None: $RAHF_DATA_DIR, else TFDS's default.
  """
  config = get_model_config(size, variant)
  return data_tasks.register_model_task(
    variant,
    image_size=config.image_size,
    heatmap_size=config.heatmap_size,
    model_vocab_size=config.vocab_size,
    vocabulary=vocabulary,
    data_dir=data_dir,
    suffix=f"_{size}_{vocabulary}_t5x",
    metric_fns=[postprocess.seqio_metric_fn],
    postprocess_fn=postprocess.seqio_postprocess_fn,
  )
