"""Writes a synthetic RichHF-18K in exactly the real sources' formats.

Output (a ready manual_dir for the `richhf18k` builder):
  train.tfrecord, dev.tfrecord, test.tfrecord   label records with the official eight keys
  pickapic/{train,test}-NNNNN-of-MMMMM.parquet   Pick-a-Pic-style rows: caption, image_0_uid,
      image_1_uid, jpg_0, jpg_1; the labelled image sits on a random side, the other side is a
      second (unlabelled) generation; plus distractor rows whose uids are not labelled
  (or, with layout="folder": images/<uid>.jpg + captions.jsonl)
  synthetic_manifest.json   the config, counts and the uids of the oddity rows (not read by
      the builder)

Every example is drawn from its own generator seeded by (seed, split, index), so a split's
content does not depend on the other splits' sizes. Scenes: rahf_jax.data.synthetic_scenes.
"""

import contextlib
import dataclasses
import io
import json
import multiprocessing.pool
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rahf_jax.data import image_sources, synthetic_scenes
from rahf_jax.data import words as words_lib
from rahf_jax.data.richhf18k import label_records

SPLIT_IDS = {"train": 0, "dev": 1, "test": 2}
PICKAPIC_SPLIT = {"train": "train", "dev": "train", "test": "test"}  # as in the real data
_DISTRACTOR_ID = 7
_ODDITY_ID = 8
_SHUFFLE_ID = 9
_OTHER_JPEG_QUALITY = 80  # the unlabelled side of a Pick-a-Pic row
# Random streams: a scene uses [seed, id, index] with id in {0, 1, 2, 7, 8}; the auxiliary
# streams (sides, other-side uids, row order) use [seed, 9, ...], so no two streams coincide.
ODDITY_KINDS = (
  "label_count_mismatch",
  "empty_prompt",
  "non_ascii_prompt",
  "missing_image",
  "undecodable_image",
  "heatmap_resized",
  "undecodable_heatmap",
  "missing_caption",
)
EMPTY_PROMPT = "?! ..."  # a caption with no words (an empty caption is a missing caption)
PARQUET_SCHEMA = pa.schema(
  [
    ("caption", pa.string()),
    ("image_0_uid", pa.string()),
    ("image_1_uid", pa.string()),
    ("jpg_0", pa.binary()),
    ("jpg_1", pa.binary()),
  ]
)


@dataclasses.dataclass
class SyntheticConfig:
  """Sizes and formats of the synthetic set (the demo's sizes: rahf_jax.demo.DEMO_DATA)."""

  num_train: int = 2000
  num_dev: int = 200
  num_test: int = 200
  image_size: int = 256
  seed: int = 0
  train_shards: int = 4  # parquet shards holding the train+dev images
  test_shards: int = 1
  rows_per_group: int = 64  # parquet row-group size
  distractor_fraction: float = 0.1  # extra unlabelled rows, relative to labelled ones
  jpeg_quality: int = 90
  oddities: bool = False  # add one record of each real-data oddity to train (ODDITY_KINDS)
  layout: str = "parquet"  # or "folder": images/<uid>.jpg + captions.jsonl

  def num(self, split: str) -> int:
    return {"train": self.num_train, "dev": self.num_dev, "test": self.num_test}[split]


def scene_rng(seed: int, split_id: int, index: int) -> np.random.Generator:
  """The generator of one example: independent of every other example."""
  return np.random.default_rng([seed, split_id, index])


def iter_scenes(split: str, config: SyntheticConfig):
  """Yields the scenes of `split` in record order."""
  for i in range(config.num(split)):
    yield synthetic_scenes.make_scene(
      scene_rng(config.seed, SPLIT_IDS[split], i), config.image_size
    )


def _render(seeds, config: SyntheticConfig, pool) -> list:
  """(EncodedScene, its generator after make_scene) per seed, in order, in `pool` if given."""
  args = [
    (list(seed), config.image_size, config.jpeg_quality, _OTHER_JPEG_QUALITY) for seed in seeds
  ]
  if pool is None:
    return [synthetic_scenes.encode_scene(*a) for a in args]
  return pool.starmap(synthetic_scenes.encode_scene, args, chunksize=64)


def _record(scene: synthetic_scenes.EncodedScene, split: str) -> label_records.LabelRecord:
  return label_records.LabelRecord(
    filename=f"{PICKAPIC_SPLIT[split]}/{scene.uid}.jpg",
    scores=scene.scores,
    artifact_map=scene.artifact_png,
    misalignment_map=scene.misalignment_png,
    label_string=words_lib.labels_to_string(scene.labels),
  )


def _oddities(config: SyntheticConfig):
  """(kind, scene, record, image bytes or None) for one record of each oddity."""
  seeds = [(config.seed, _ODDITY_ID, k) for k in range(len(ODDITY_KINDS))]
  out = []
  for kind, (scene, _) in zip(ODDITY_KINDS, _render(seeds, config, None), strict=True):
    image = scene.jpeg
    record = _record(scene, "train")
    if kind == "label_count_mismatch":
      record.label_string += " 1"
    elif kind == "empty_prompt":
      scene.prompt, record.label_string = EMPTY_PROMPT, ""
    elif kind == "non_ascii_prompt":
      prefix = 'a "dreamy" café-style picture — naïve: '
      scene.prompt = prefix + scene.prompt
      n_prefix = len(words_lib.split_prompt_words(prefix))
      record.label_string = words_lib.labels_to_string([1] * n_prefix + scene.labels)
    elif kind == "missing_image":
      image = None
    elif kind == "undecodable_image":
      image = b"\xff\xd8\xff\xe0 this is not a JPEG"
    elif kind == "heatmap_resized":
      full = synthetic_scenes.Image.open(io.BytesIO(scene.artifact_png))
      record.artifact_map = synthetic_scenes.encode_png(np.asarray(full.resize((256, 256))))
    elif kind == "undecodable_heatmap":
      record.misalignment_map = b"\x89PNG\r\n\x1a\n truncated"
    elif kind == "missing_caption":
      scene.prompt = None  # a null caption next to the image
    out.append((kind, scene, record, image))
  return out


def _write_parquet(rows, directory, prefix, shards, rows_per_group):
  os.makedirs(directory, exist_ok=True)
  shards = max(1, min(shards, len(rows))) if rows else 1
  bounds = np.linspace(0, len(rows), shards + 1).astype(int)
  paths = []
  for s in range(shards):
    part = rows[bounds[s] : bounds[s + 1]]
    table = pa.Table.from_pylist(
      [dict(zip(PARQUET_SCHEMA.names, r, strict=True)) for r in part], schema=PARQUET_SCHEMA
    )
    path = os.path.join(directory, f"{prefix}-{s:05d}-of-{shards:05d}.parquet")
    pq.write_table(table, path, row_group_size=rows_per_group)
    paths.append(path)
  return paths


def write_synthetic_richhf(
  out_dir: str, config: SyntheticConfig | None = None, workers: int = 1
) -> dict:
  """Writes the synthetic sources under `out_dir`; returns the manifest (also written).

  Args:
    workers: threads that render and encode the scenes (about 11 ms each on one core, mostly
      in numpy and PIL, which release the GIL: 2 threads on 2 cores take half the time of 1);
      the data is the same for any number.
  """
  config = config or SyntheticConfig()
  if config.layout not in ("parquet", "folder"):
    raise ValueError(f"layout must be 'parquet' or 'folder', not {config.layout!r}.")
  os.makedirs(out_dir, exist_ok=True)
  rows = {"train": [], "test": []}  # Pick-a-Pic split -> parquet rows
  uids = {}
  counts = {}

  def add_row(pickapic_split, rng, scene, image):
    """A row with `image` (the scene's JPEG bytes) on a random side of its mirrored JPEG."""
    other_uid = synthetic_scenes.new_uid(rng)
    if rng.random() < 0.5:
      row = (scene.prompt, scene.uid, other_uid, image, scene.mirrored_jpeg)
    else:
      row = (scene.prompt, other_uid, scene.uid, scene.mirrored_jpeg, image)
    rows[pickapic_split].append(row)

  pool = multiprocessing.pool.ThreadPool(workers) if workers > 1 else None
  with pool or contextlib.nullcontext():
    oddities = _oddities(config) if config.oddities else []
    for split in SPLIT_IDS:
      side_rng = np.random.default_rng([config.seed, _SHUFFLE_ID, SPLIT_IDS[split]])
      seeds = [(config.seed, SPLIT_IDS[split], i) for i in range(config.num(split))]
      records = []
      uids[split] = []
      for scene, _ in _render(seeds, config, pool):
        records.append(label_records.serialize_record(_record(scene, split)))
        add_row(PICKAPIC_SPLIT[split], side_rng, scene, scene.jpeg)
        uids[split].append(scene.uid)
      if split == "train":
        for _, scene, record, image in oddities:
          records.append(label_records.serialize_record(record))
          if image is not None:
            add_row("train", side_rng, scene, image)
      counts[split] = label_records.write_tfrecord(
        os.path.join(out_dir, f"{split}.tfrecord"), records
      )

    for pickapic_split in rows:
      n = int(round(config.distractor_fraction * len(rows[pickapic_split])))
      offset = 0 if pickapic_split == "train" else 10**6
      seeds = [(config.seed, _DISTRACTOR_ID, i + offset) for i in range(n)]
      for scene, rng in _render(seeds, config, pool):
        add_row(pickapic_split, rng, scene, scene.jpeg)
      order = np.random.default_rng([config.seed, _SHUFFLE_ID, 10 + SPLIT_IDS[pickapic_split]])
      rows[pickapic_split] = [
        rows[pickapic_split][i] for i in order.permutation(len(rows[pickapic_split]))
      ]

  files = []
  if config.layout == "parquet":
    pdir = os.path.join(out_dir, image_sources.PARQUET_DIR)
    files += _write_parquet(
      rows["train"], pdir, "train", config.train_shards, config.rows_per_group
    )
    files += _write_parquet(rows["test"], pdir, "test", config.test_shards, config.rows_per_group)
  else:
    _write_folder(out_dir, rows)

  manifest = {
    "scene_version": synthetic_scenes.SCENE_VERSION,
    "config": dataclasses.asdict(config),
    "label_records": counts,
    "pickapic_rows": {k: len(v) for k, v in rows.items()},
    "parquet_files": [os.path.relpath(f, out_dir) for f in files],
    "oddities": {kind: scene.uid for kind, scene, _, _ in oddities},
  }
  with open(os.path.join(out_dir, "synthetic_manifest.json"), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=2, ensure_ascii=False)
  return manifest


def is_current(out_dir: str, config: SyntheticConfig) -> bool:
  """True when out_dir holds a synthetic set written with `config` by this scene generator."""
  try:
    with open(os.path.join(out_dir, "synthetic_manifest.json"), encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return False
  return manifest.get("scene_version") == synthetic_scenes.SCENE_VERSION and manifest.get(
    "config"
  ) == dataclasses.asdict(config)


def _write_folder(out_dir, rows):
  """images/<uid>.jpg for both sides of every row, and captions.jsonl."""
  image_dir = os.path.join(out_dir, image_sources.IMAGES_DIR)
  os.makedirs(image_dir, exist_ok=True)
  with open(os.path.join(out_dir, image_sources.CAPTIONS_FILE), "w", encoding="utf-8") as f:
    for pickapic_split in ("train", "test"):
      for caption, uid0, uid1, jpg0, jpg1 in rows[pickapic_split]:
        for uid, jpg in ((uid0, jpg0), (uid1, jpg1)):
          with open(os.path.join(image_dir, f"{uid}.jpg"), "wb") as img:
            img.write(jpg)
          f.write(json.dumps({"uid": uid, "caption": caption}, ensure_ascii=False) + "\n")
