"""`import rahf_jax.data` registers the default SeqIO tasks cheaply; a default vocabulary that
cannot be read says so in one line and names the offline choices."""

import os
import subprocess
import sys

import pytest
import seqio
import tensorflow as tf
from seqio_fakes import fake_source

from rahf_jax.data import tasks, vocab
from rahf_jax.data.richhf18k import richhf18k_dataset_builder

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_TASKS = [
  "richhf18k_augmented",
  "richhf18k_augmented_demo",
  "richhf18k_multihead",
  "richhf18k_multihead_demo",
]
OFFLINE_CHOICES = ("config.data.vocabulary", "'demo'", "spiece.model")

_IMPORT_SCRIPT = """
import seqio
import rahf_jax.data
names = sorted(n for n in seqio.TaskRegistry.names() if n.startswith("richhf18k_"))
vocabularies = [seqio.get_mixture_or_task(n).output_features["inputs"].vocabulary for n in names]
print(repr((names, [v._model is not None for v in vocabularies])))
"""


def test_import_registers_the_default_tasks_without_reading_anything(tmp_path):
  missing = tmp_path / "no_such_data_dir"
  env = dict(
    os.environ,
    RAHF_DATA_DIR=str(missing),
    PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
  )
  proc = subprocess.run(
    [sys.executable, "-c", _IMPORT_SCRIPT], capture_output=True, text=True, env=env, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  names, loaded = eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307  (our own print)
  assert names == DEFAULT_TASKS
  assert not any(loaded)  # no vocabulary read (the T5 one lives on GCS)
  assert not missing.exists()  # no dataset read or made


def test_task_version_is_the_builder_version():
  assert tasks.TFDS_VERSION == str(richhf18k_dataset_builder.Builder.VERSION)


def test_missing_local_vocabulary_names_the_offline_choices(tmp_path):
  path = str(tmp_path / "nowhere" / "spiece.model")
  with pytest.raises(FileNotFoundError) as info:
    vocab.get_vocabulary(path)
  message = str(info.value)
  assert "\n" not in message and path in message
  assert all(choice in message for choice in OFFLINE_CHOICES), message


@pytest.fixture
def offline_gcs(monkeypatch):
  """tf.io.gfile fails on gs:// paths the way it does on a machine without network."""
  real_gfile = tf.io.gfile.GFile

  def gfile(path, *args, **kwargs):
    if str(path).startswith("gs://"):
      raise tf.errors.FailedPreconditionError(
        None,
        None,
        "Error executing an HTTP request: libcurl code 6 meaning 'Could not resolve hostname'"
        f"\n\t when reading metadata of {path}",
      )
    return real_gfile(path, *args, **kwargs)

  monkeypatch.setattr(tf.io.gfile, "GFile", gfile)
  monkeypatch.setattr(seqio.vocabularies.tf.io.gfile, "GFile", gfile)  # seqio's tf module


def test_unreachable_default_vocabulary_says_so_in_one_line(offline_gcs):
  vocabulary = seqio.get_mixture_or_task("richhf18k_multihead").output_features["inputs"].vocabulary
  assert vocabulary.sentencepiece_model_file == vocab.T5_VOCAB_PATH
  with pytest.raises(FileNotFoundError) as info:
    vocabulary.encode("a red cube")
  message = str(info.value)
  assert "\n" not in message and vocab.T5_VOCAB_PATH in message
  assert all(choice in message for choice in OFFLINE_CHOICES), message


def test_unreachable_vocabulary_in_a_task_pipeline(offline_gcs):
  names = tasks.register_tasks(
    data_dir=None,
    image_size=8,
    heatmap_size=8,
    vocabulary=vocab.t5_vocabulary(),
    suffix="_offline_test",
    source=fake_source(),
  )
  task = seqio.get_mixture_or_task(names["multihead"])
  with pytest.raises(FileNotFoundError) as info:
    next(iter(task.get_dataset({"inputs": 16, "targets": 16}, split="dev", shuffle=False)))
  message = str(info.value)
  assert "\n" not in message and vocab.T5_VOCAB_PATH in message
  assert all(choice in message for choice in OFFLINE_CHOICES), message
