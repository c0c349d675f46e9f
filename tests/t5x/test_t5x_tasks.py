"""rahf_jax.t5x.tasks: the t5x tasks over a tiny synthetic richhf18k build (SeqIO, no t5x).

Checks the SeqIO evaluation glue the t5x route relies on: the task is sized for the model,
its postprocess_fn turns task examples into target dicts, and its predict_with_aux metric
function scores perfect predictions perfectly (PLCC 1, MSE 0, F1 1) and a constant
prediction as numpy says.
"""

import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

from rahf_jax import features as F
from rahf_jax.data.feature_converter import CONVERTERS
from rahf_jax.inference import postprocess as pp
from rahf_jax.models import get_model_config
from rahf_jax.t5x import tasks as t5x_tasks

LENGTHS = {"inputs": 32, "targets": 32}


def _examples(name, split="dev"):
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(LENGTHS, split=split, shuffle=False, use_cached=False)
  return task, list(tfds.as_numpy(ds))


def test_rahf_task_is_sized_for_the_model_and_carries_the_metrics(t5x_data_dir):
  name = t5x_tasks.rahf_task(F.MULTI_HEAD, "tiny", "demo", data_dir=t5x_data_dir)
  assert name == t5x_tasks.task_name(F.MULTI_HEAD, "tiny", "demo")
  assert t5x_tasks.rahf_task(F.MULTI_HEAD, "tiny", "demo", data_dir=t5x_data_dir) == name
  task, examples = _examples(name)
  config = get_model_config("tiny", F.MULTI_HEAD)
  assert len(examples) == 6
  assert examples[0]["image"].shape == (config.image_size, config.image_size, 3)
  assert examples[0]["heatmap_implausibility"].shape == (config.heatmap_size,) * 2
  assert [m.model_output_type for m in task.metric_objs] == [
    seqio.metrics.ModelOutputType.PREDICTION_WITH_AUX
  ]
  # The model's converter accepts the task output.
  converter = CONVERTERS[F.MULTI_HEAD](image_size=config.image_size, heatmap_size=32)
  ds = converter(task.get_dataset(LENGTHS, split="dev", shuffle=False), LENGTHS)
  assert ds.element_spec["heatmap_misalignment"].shape == (32, 32)


def test_metric_fn_scores_perfect_and_constant_predictions(t5x_data_dir):
  name = t5x_tasks.rahf_task(F.MULTI_HEAD, "tiny", "demo", data_dir=t5x_data_dir)
  task, examples = _examples(name)
  targets = [task.postprocess_fn("", example=ex, is_target=True) for ex in examples]
  for t, ex in zip(targets, examples, strict=True):
    assert t["scores"]["overall"] == pytest.approx(float(ex["score_overall"]))
    np.testing.assert_array_equal(t["heatmaps"]["implausibility"], ex["heatmap_implausibility"])
    if ex["decoder_weight"] > 0:
      assert t[F.WORDS_TYPE] == ex["targets_pretokenized"].decode()
  aux = {f"score_{s}": [t["scores"][s] for t in targets] for s in F.SCORE_TYPES}
  aux.update({f"heatmap_{h}": [t["heatmaps"][h] for t in targets] for h in F.HEATMAP_TYPES})
  texts = [t.get(F.WORDS_TYPE, "") for t in targets]
  metrics = task.predict_with_aux_metric_fns[0](targets, texts, aux)
  for s in F.SCORE_TYPES:
    assert metrics[f"{s}/plcc"] == pytest.approx(1.0)
  for h in F.HEATMAP_TYPES:
    assert metrics[f"{h}/mse_all"] == pytest.approx(0.0, abs=1e-12)
  with_words = [t for t in targets if F.WORDS_TYPE in t]
  has_positive = [F.MISALIGNED_SUFFIX in t[F.WORDS_TYPE] for t in with_words]
  assert metrics[f"{F.WORDS_TYPE}/recall"] == pytest.approx(np.mean(has_positive))

  # Constant half-grey heatmaps: MSE is the mean of (gt - 0.5)^2 over all maps.
  grey = dict(aux)
  for h in F.HEATMAP_TYPES:
    grey[f"heatmap_{h}"] = [np.full_like(m, 0.5) for m in aux[f"heatmap_{h}"]]
  metrics = task.predict_with_aux_metric_fns[0](targets, texts, grey)
  for h in F.HEATMAP_TYPES:
    gt = np.stack([t["heatmaps"][h] for t in targets]).astype(np.float64)
    assert metrics[f"{h}/mse_all"] == pytest.approx(np.mean((gt - 0.5) ** 2), rel=1e-5)


def test_augmented_task_targets_follow_the_output_type(t5x_data_dir):
  name = t5x_tasks.rahf_task(F.AUGMENTED_PROMPT, "tiny", "demo", data_dir=t5x_data_dir)
  task, examples = _examples(name)
  assert len(examples) == 6 * len(F.AUGMENTED_OUTPUT_TYPES)
  for ex in examples[: len(F.AUGMENTED_OUTPUT_TYPES)]:
    t = pp.target_dict(ex)
    kind = F.AUGMENTED_OUTPUT_TYPES[int(ex["output_type"])]
    if kind in F.SCORE_TYPES:
      assert t == {"scores": {kind: pytest.approx(float(ex["score"]))}}
    elif kind in F.HEATMAP_TYPES:
      np.testing.assert_array_equal(t["heatmaps"][kind], ex["heatmap"])
    else:
      assert t in ({}, {F.WORDS_TYPE: ex["targets_pretokenized"].decode()})


def test_vocabulary_that_does_not_fit_the_model_is_refused():
  with pytest.raises(ValueError, match="vocabulary 't5'"):
    t5x_tasks.rahf_task(F.MULTI_HEAD, "tiny", "t5", data_dir="/nonexistent")
