"""SeqIO tasks over a real synthetic richhf18k build (tests/data/conftest.py's fixtures).

The build with oddities holds a label-count mismatch (word_labels_valid=False), a prompt
without words and a non-ASCII prompt next to clean examples. References come from the built
examples read back with TFDS and from words.mark_words / numpy block means, not from the code
under test.
"""

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds
from richhf_fixtures import read_built

from rahf_jax import features as F
from rahf_jax.data import pipeline, tasks, vocab
from rahf_jax.data import words as words_lib

IMAGE_SIZE, HEATMAP_SIZE = 32, 16
LENGTHS = {"inputs": 48, "targets": 40}


def _register(data_dir, suffix):
  return tasks.register_tasks(
    data_dir=str(data_dir),
    image_size=IMAGE_SIZE,
    heatmap_size=HEATMAP_SIZE,
    vocabulary=vocab.demo_vocabulary(),
    suffix=suffix,
  )


@pytest.fixture(scope="module")
def built(richhf18k_odd_data_dir):
  names = _register(richhf18k_odd_data_dir, "_test_real")
  reference = read_built(richhf18k_odd_data_dir, "train", decode_media=True)
  return names, reference


def _task_examples(name):
  task = seqio.get_mixture_or_task(name)
  ds = task.get_dataset(LENGTHS, split="train", shuffle=False, num_epochs=1)
  return list(ds.as_numpy_iterator())


def _model_examples(name):
  ds = pipeline.make_dataset(
    task_name=name,
    split="train",
    batch_size=5,
    feature_lengths=LENGTHS,
    shuffle=False,
    seed=None,
    num_epochs=1,
    drop_remainder=False,
  )
  out = []
  for batch in pipeline.as_numpy_batches(ds):
    n = len(batch["prompt_ids"])
    out.extend({k: v[i] for k, v in batch.items()} for i in range(n))
  return out


def _expected_target(ref) -> str:
  words = [w.decode() for w in ref["words"]]
  if not ref["word_labels_valid"]:
    return " ".join(words)
  return words_lib.mark_words(words, [int(x) for x in ref["word_labels"]])


def _block_mean(m, size):
  f = m.shape[0] // size
  return m[..., 0].reshape(size, f, size, f).mean(axis=(1, 3)) / 255.0


def test_build_has_the_cases_under_test(built):
  _, reference = built
  valid = [bool(r["word_labels_valid"]) for r in reference.values()]
  assert not all(valid) and any(valid)
  assert any(len(r["words"]) == 0 for r in reference.values())
  assert any(words_lib.MISALIGNED == 0 and 0 in r["word_labels"] for r in reference.values())


def test_multihead_task_matches_the_built_examples(built):
  names, reference = built
  demo = vocab.demo_vocabulary()
  examples = _task_examples(names[F.MULTI_HEAD])
  assert sorted(ex["uid"].decode() for ex in examples) == sorted(reference)
  for ex in examples:
    ref = reference[ex["uid"].decode()]
    assert demo.decode(ex["targets"].tolist()) == _expected_target(ref)
    assert demo.decode(ex["inputs"].tolist()) == ref["prompt"].decode()
    assert ex["targets"][-1] == F.EOS_ID and ex["inputs"][-1] == F.EOS_ID
    assert ex["decoder_weight"] == float(ref["word_labels_valid"])
    for s in F.SCORE_TYPES:
      assert ex[f"score_{s}"] == ref[s]
    for h in F.HEATMAP_TYPES:
      expected = _block_mean(ref[f"heatmap_{h}"], HEATMAP_SIZE)
      np.testing.assert_allclose(ex[f"heatmap_{h}"], expected, atol=1e-5)
    image = ex["image"]
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert image.min() >= -1.0 and image.max() <= 1.0
    np.testing.assert_allclose(image.mean(), ref["image"].mean() / 127.5 - 1.0, atol=0.02)


def test_multihead_batches(built):
  names, reference = built
  demo = vocab.demo_vocabulary()
  examples = _task_examples(names[F.MULTI_HEAD])
  model = _model_examples(names[F.MULTI_HEAD])
  assert len(model) == len(examples) == len(reference)
  for ex, m in zip(examples, model, strict=True):
    ref = reference[ex["uid"].decode()]
    assert m["image"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and m["image"].dtype == np.float32
    assert m["prompt_ids"].shape == (LENGTHS["inputs"],) and m["prompt_ids"].dtype == np.int32
    for k in ("decoder_input_ids", "decoder_target_ids", "decoder_loss_weights"):
      assert m[k].shape == (LENGTHS["targets"],)
    for h in F.HEATMAP_TYPES:
      hm = m[f"heatmap_{h}"]
      assert hm.shape == (HEATMAP_SIZE, HEATMAP_SIZE) and 0.0 <= hm.min() <= hm.max() <= 1.0
    for s in F.SCORE_TYPES:
      assert 0.0 <= m[f"score_{s}"] <= 1.0 and m[f"score_{s}"] == ref[s]
    target = m["decoder_target_ids"]
    assert demo.decode(target.tolist()) == _expected_target(ref)
    n = int((target != F.PAD_ID).sum())
    assert target[n - 1] == F.EOS_ID and not target[n:].any()
    np.testing.assert_array_equal(m["decoder_input_ids"][1:n], target[: n - 1])
    weight = float(ref["word_labels_valid"])
    np.testing.assert_array_equal(m["decoder_loss_weights"], weight * (target != F.PAD_ID))


def test_heatmaps_decoded_by_the_source_equal_those_of_the_preprocessors(
  built, richhf18k_odd_data_dir, monkeypatch
):
  names, _ = built
  decoders = tasks.media_decoders(HEATMAP_SIZE)
  assert not isinstance(decoders[f"heatmap_{F.HEATMAP_TYPES[0]}"], tfds.decode.SkipDecoding)
  monkeypatch.setattr(tasks, "MAX_SOURCE_DECODED_HEATMAP_SIZE", HEATMAP_SIZE - 1)
  assert all(
    isinstance(d, tfds.decode.SkipDecoding) for d in tasks.media_decoders(HEATMAP_SIZE).values()
  )
  encoded = _register(richhf18k_odd_data_dir, "_test_encoded_heatmaps")
  for variant in F.VARIANTS:
    from_source, from_preprocessors = (
      _model_examples(names[variant]),
      _model_examples(encoded[variant]),
    )
    assert len(from_source) == len(from_preprocessors) > 0
    for a, b in zip(from_source, from_preprocessors, strict=True):
      assert a.keys() == b.keys()
      for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_the_stored_source_keeps_the_maps_as_stored(built):
  names, reference = built
  h = F.HEATMAP_TYPES[0]
  for name in names.values():
    stored = tasks.stored_source(name).get_dataset(split="train", shuffle=False)
    task_source = seqio.get_mixture_or_task(name).source.get_dataset(split="train", shuffle=False)
    for raw, small in zip(stored.take(3).as_numpy_iterator(), task_source.take(3), strict=True):
      pixels = tf.io.decode_png(raw[f"heatmap_{h}"]).numpy()
      np.testing.assert_array_equal(pixels, reference[raw["uid"].decode()][f"heatmap_{h}"])
      assert small[f"heatmap_{h}"].shape == (HEATMAP_SIZE, HEATMAP_SIZE)
  with pytest.raises(ValueError, match="not registered"):
    tasks.stored_source("no_such_task")


def test_augmented_task_one_example_per_output_type(built):
  names, reference = built
  demo = vocab.demo_vocabulary()
  types = F.AUGMENTED_OUTPUT_TYPES
  examples = _task_examples(names[F.AUGMENTED_PROMPT])
  model = _model_examples(names[F.AUGMENTED_PROMPT])
  assert len(examples) == len(model) == len(types) * len(reference)
  for start in range(0, len(examples), len(types)):
    group = examples[start : start + len(types)]
    ref = reference[group[0]["uid"].decode()]
    for k, (ex, m) in enumerate(zip(group, model[start : start + len(types)], strict=True)):
      t = types[k]
      assert ex["uid"] == group[0]["uid"] and m["output_type"] == k
      prompt = demo.decode(m["prompt_ids"].tolist())
      full = F.augmented_prompt(t, ref["prompt"].decode())
      assert prompt == full[: len(prompt)] and prompt.startswith(F.AUGMENTED_PROMPT_PREFIXES[t])
      assert demo.decode(m["decoder_target_ids"].tolist()) == _expected_target(ref)
      if t in F.HEATMAP_TYPES:
        expected = _block_mean(ref[f"heatmap_{t}"], HEATMAP_SIZE)
        np.testing.assert_allclose(m["heatmap"], expected, atol=1e-5)
      else:
        assert not m["heatmap"].any()
      assert m["score"] == (ref[t] if t in F.SCORE_TYPES else 0.0)
      active = t == F.WORDS_TYPE and bool(ref["word_labels_valid"])
      target = m["decoder_target_ids"]
      np.testing.assert_array_equal(m["decoder_loss_weights"], float(active) * (target != F.PAD_ID))


def test_register_tasks_is_idempotent_and_defaults_exist(richhf18k_data_dir):
  kwargs = dict(
    data_dir=str(richhf18k_data_dir),
    image_size=8,
    heatmap_size=8,
    vocabulary=vocab.demo_vocabulary(),
    suffix="_idem",
  )
  first = tasks.register_tasks(**kwargs)
  again = tasks.register_tasks(**kwargs)
  assert first == again == {v: tasks.task_name(v, "_idem") for v in F.VARIANTS}
  for variant, name in first.items():
    assert tasks.variant_of(name) == variant
    source = seqio.get_mixture_or_task(name).source
    assert source.tfds_dataset.name == f"richhf18k:{tasks.TFDS_VERSION}"
  for suffix in ("", "_demo"):
    for variant in F.VARIANTS:
      assert tasks.variant_of(tasks.task_name(variant, suffix)) == variant
  # Re-registered tasks read the new settings.
  batch = next(
    pipeline.as_numpy_batches(
      pipeline.make_dataset(
        task_name=first[F.MULTI_HEAD],
        split="dev",
        batch_size=2,
        feature_lengths=LENGTHS,
        shuffle=True,
        seed=0,
      )
    )
  )
  assert batch["image"].shape == (2, 8, 8, 3) and batch["heatmap_misalignment"].shape == (2, 8, 8)
  with pytest.raises(ValueError, match="Unknown variant"):
    tasks.task_name("bogus")
  with pytest.raises(ValueError, match="positive"):
    tasks.register_tasks(**{**kwargs, "image_size": 0})
