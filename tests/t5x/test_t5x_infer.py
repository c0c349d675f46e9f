"""t5x.train and t5x.infer with our gin files on a tiny synthetic richhf18k (skipped without t5x).

Each test trains the tiny model for a few steps with `python -m t5x.train`, runs
`python -m t5x.infer` with configs/t5x/runs/infer.gin on the 6-image test split, and reads the
compact lines and heatmap files back (rahf_jax/t5x/infer_output.py). The numbers in the lines
are checked against the adapter run in-process on the same checkpoint and task examples.
Inference runs in batches of 4 with a chunk per batch, so t5x's chunk boundaries fall inside
an augmented image's seven rows.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

# A submodule: under pytest, tests/t5x itself would satisfy a plain `import t5x`.
pytest.importorskip(
  "t5x.models",
  reason="t5x is not installed: t5x.train and t5x.infer with the gin files do not run (README.md, "
  "section t5x, installs it)",
)

import gin  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
import seqio  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from rahf_jax import features as F  # noqa: E402
from rahf_jax.evaluation.curves import read_scalars  # noqa: E402
from rahf_jax.inference import postprocess  # noqa: E402
from rahf_jax.t5x import infer_output  # noqa: E402
from rahf_jax.t5x import tasks as t5x_tasks  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LENGTHS = {"inputs": 32, "targets": 32}  # configs/rahf.py:tiny's prompt and target lengths
HEATMAP_SIZE = 32  # the tiny size's
FLOAT32 = "--gin.MODEL_OVERRIDES={'dtype': 'float32'}"  # as the in-process reference
# orbax reads the shardings of the restored (one-device) checkpoint from its files.
pytestmark = pytest.mark.filterwarnings("ignore:Sharding info not provided:UserWarning")


def _t5x(script, data_dir, args):
  # One CPU device (the tiny model's 2 heads do not split over t5x's 8-device 'model' axis).
  env = dict(os.environ, RAHF_DATA_DIR=data_dir, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
  env.pop("XLA_FLAGS", None)
  cmd = [sys.executable, "-m", f"t5x.{script}", *args]
  done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def _train(variant, data_dir, model_dir, steps, extra=()):
  return _t5x(
    "train",
    data_dir,
    [
      f"--gin_file=configs/t5x/models/tiny_{variant}.gin",
      "--gin_file=configs/t5x/runs/local_tiny_cpu.gin",
      f'--gin.MODEL_DIR="{model_dir}"',
      f"--gin.TRAIN_STEPS={steps}",
      "--gin.BATCH_SIZE=7",
      "--gin.EVAL_BATCH_SIZE=7",
      "--gin.EVAL_STEPS=1",
      "--gin.train.infer_eval_dataset_cfg=None",  # the metrics' decoding is not under test here
      *extra,
    ],
  )


def _infer(variant, data_dir, checkpoint, out_dir):
  _t5x(
    "infer",
    data_dir,
    [
      f"--gin_file=configs/t5x/models/tiny_{variant}.gin",
      "--gin_file=configs/t5x/runs/infer.gin",
      f'--gin.CHECKPOINT_PATH="{checkpoint}"',
      f'--gin.INFER_OUTPUT_DIR="{out_dir}"',
      "--gin.utils.DatasetConfig.batch_size=4",
      "--gin.infer.checkpoint_period=1",
      FLOAT32,
    ],
  )
  name = t5x_tasks.task_name(variant, "tiny", "demo")
  infer_file = os.path.join(out_dir, f"{name}-predict_with_aux.jsonl-00000-of-00001")
  assert os.path.isfile(infer_file)
  assert not [p for p in os.listdir(out_dir) if p.startswith("tmp-")]  # t5x deleted its chunks
  return infer_file


def _reference(variant, data_dir, checkpoint):
  """The task's test examples and the adapter's predictions for them, in-process (float32)."""
  gin.clear_config()
  gin.add_config_file_search_path(REPO)
  gin.parse_config_files_and_bindings(
    [os.path.join(REPO, f"configs/t5x/models/tiny_{variant}.gin")],
    ["MODEL_OVERRIDES = {'dtype': 'float32'}"],
  )
  model = gin.query_parameter("%MODEL").scoped_configurable_fn()
  gin.clear_config()
  # The run's task (configs/rahf.py:tiny sizes the images 128, not the tiny model size's 64).
  name = t5x_tasks.rahf_task(run_config=model.train_config, data_dir=data_dir)
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(LENGTHS, split="test", shuffle=False, use_cached=False)
  examples = list(tfds.as_numpy(ds))
  features = list(tfds.as_numpy(model.FEATURE_CONVERTER_CLS(pack=False)(ds, LENGTHS)))
  batch = {k: np.stack([f[k] for f in features]) for k in features[0]}
  params = ocp.PyTreeCheckpointer().restore(os.path.join(checkpoint, "state"))["target"]
  ids, aux = model.predict_batch_with_aux(params, batch)
  texts = postprocess.decode_texts(ids, model.output_vocabulary)
  return examples, texts, {k: np.asarray(v) for k, v in aux.items()}


def _check_words(line):
  words = F.split_prompt_words(line["prompt"])
  assert set(line["misaligned_prompt_words"]) <= set(words)
  marked = line["marked_prompt"].split()
  assert [w.removesuffix(F.MISALIGNED_SUFFIX) for w in marked] == words
  chosen = [w.removesuffix(F.MISALIGNED_SUFFIX) for w in marked if w.endswith("_0")]
  assert chosen == line["misaligned_prompt_words"]
  assert chosen == postprocess.misaligned_prompt_words(line["prompt"], line["decoded"])


def _check_maps(infer_file, line, expected):
  assert line["heatmap_shape"] == [HEATMAP_SIZE, HEATMAP_SIZE]
  for h in F.HEATMAP_TYPES:
    paths = line["heatmaps"][h]
    heat = infer_output.load_heatmap(infer_file, paths["npy"])
    assert heat.dtype == np.float32 and heat.shape == (HEATMAP_SIZE, HEATMAP_SIZE)
    np.testing.assert_allclose(heat, expected[h], rtol=1e-4, atol=1e-5)
    png = infer_output.load_heatmap(infer_file, paths["png"])
    np.testing.assert_array_equal(np.round(png * 255), infer_output.heatmap_to_uint8(heat))


@pytest.mark.slow
def test_t5x_infer_multihead_writes_compact_lines_and_map_files(t5x_data_dir, tmp_path):
  model_dir = tmp_path / "model"
  _train(
    F.MULTI_HEAD,
    t5x_data_dir,
    model_dir,
    1,
    ["--gin.EVAL_PERIOD=1", "--gin.train.train_eval_dataset_cfg=None",
     "--gin.utils.SaveCheckpointConfig.period=1"],
  )  # fmt: skip
  checkpoint = model_dir / "checkpoint_1"
  infer_file = _infer(F.MULTI_HEAD, t5x_data_dir, checkpoint, tmp_path / "infer")
  lines = infer_output.read_lines(infer_file)
  examples, texts, aux = _reference(F.MULTI_HEAD, t5x_data_dir, str(checkpoint))
  assert [line["uid"] for line in lines] == [e["uid"].decode() for e in examples]
  assert len(lines) == 6
  for i, line in enumerate(lines):
    assert line["prompt"] == examples[i]["inputs_pretokenized"].decode()
    scores = {s: float(aux[f"score_{s}"][i]) for s in F.SCORE_TYPES}
    assert line["scores"] == pytest.approx(scores, rel=1e-4, abs=1e-5)
    assert line["decoded"] == texts[i]
    _check_words(line)
    _check_maps(infer_file, line, {h: aux[f"heatmap_{h}"][i] for h in F.HEATMAP_TYPES})


@pytest.mark.slow
def test_t5x_train_and_infer_augmented_one_line_per_image(t5x_data_dir, tmp_path):
  model_dir = tmp_path / "model"
  _train(
    F.AUGMENTED_PROMPT,
    t5x_data_dir,
    model_dir,
    4,
    ["--gin.EVAL_PERIOD=2", "--gin.utils.SaveCheckpointConfig.period=2"],
  )
  assert (model_dir / "checkpoint_2").is_dir() and (model_dir / "checkpoint_4").is_dir()
  train = dict(read_scalars(str(model_dir / "train"))["loss"])
  assert sorted(train) == [2, 4] and all(np.isfinite(v) for v in train.values())
  task = t5x_tasks.task_name(F.AUGMENTED_PROMPT, "tiny", "demo")
  dev = dict(read_scalars(str(model_dir / "training_eval" / task))["loss"])
  assert np.isfinite(dev[2]) and dev[4] < dev[2]  # the same dev batch, two steps apart

  checkpoint = model_dir / "checkpoint_4"
  infer_file = _infer(F.AUGMENTED_PROMPT, t5x_data_dir, checkpoint, tmp_path / "infer")
  lines = infer_output.read_lines(infer_file)
  examples, texts, aux = _reference(F.AUGMENTED_PROMPT, t5x_data_dir, str(checkpoint))
  types = F.AUGMENTED_OUTPUT_TYPES
  assert len(examples) == 6 * len(types)
  uids = [e["uid"].decode() for e in examples[:: len(types)]]
  assert [line["uid"] for line in lines] == uids and len(set(uids)) == 6
  for i, line in enumerate(lines):
    rows = range(i * len(types), (i + 1) * len(types))
    by_type = {types[aux["output_type"][r]]: r for r in rows}
    assert set(by_type) == set(types)
    assert all(examples[r]["uid"].decode() == line["uid"] for r in rows)
    prefix = F.augmented_prompt(F.WORDS_TYPE, "")
    assert (
      line["prompt"]
      == examples[by_type[F.WORDS_TYPE]]["inputs_pretokenized"].decode()[len(prefix) :]
    )
    scores = {s: float(aux["score"][by_type[s]]) for s in F.SCORE_TYPES}
    assert line["scores"] == pytest.approx(scores, rel=1e-4, abs=1e-5)
    assert list(line["scores"]) == list(F.SCORE_TYPES)
    assert line["decoded"] == texts[by_type[F.WORDS_TYPE]]
    _check_words(line)
    _check_maps(infer_file, line, {h: aux["heatmap"][by_type[h]] for h in F.HEATMAP_TYPES})
  # Chunks of 4 rows: an image's two map rows can fall into two chunks; still one line.
  chunks = [{line["heatmaps"][h]["npy"].split("/")[1] for h in F.HEATMAP_TYPES} for line in lines]
  assert any(len(c) == 2 for c in chunks)
