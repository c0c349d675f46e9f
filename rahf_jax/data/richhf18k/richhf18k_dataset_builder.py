"""TFDS builder `richhf18k`: RichHF-18K labels joined with Pick-a-Pic images and prompts.

Features of every example (fixed names; the SeqIO tasks depend on them):

  image                  Image(shape=(None, None, 3))   the Pick-a-Pic image, encoded bytes as given
  prompt                 Text                           the Pick-a-Pic caption, exactly as given
  filename               Text                           RichHF-18K `filename`
  uid                    Text                           filename's basename without extension
  plausibility           float32                        from `artifact_score`
  alignment              float32                        from `misalignment_score`
  aesthetics             float32                        from `aesthetics_score`
  overall                float32                        from `overall_score`
  heatmap_implausibility Image(shape=(512, 512, 1)) PNG from `artifact_map`, uint8 0..255
  heatmap_misalignment   Image(shape=(512, 512, 1)) PNG from `misalignment_map`, uint8 0..255
  words                  Sequence(Text)                 the prompt's words (rahf_jax.data.words)
  word_labels            Sequence(int32)                labels as given: 0 = misaligned, 1 = aligned
  word_labels_valid      bool                           False: label count != word count
  target                 Text                           words joined by spaces, misaligned ones `_0`
  heatmap_<h>_resized    bool   True: that map was not 512x512 and was resized (bilinear)
  heatmap_<h>_reencoded  bool   True: that map was 512x512 but not an 8-bit single-channel PNG
                                and was converted and re-encoded (h: implausibility, misalignment)

Sources (manual_dir, full layout in README.md): the official label files plus Pick-a-Pic
images and captions (pickapic/*.parquet, or images/ + captions.jsonl), or all-in-one mirror
tables (tables/*.parquet: image, caption, filename and labels per row; mirror_tables), whose
labels are cross-checked against the official files of the splits that have them (mirror_build).
Parquet column names follow a preset, overridable in <manual_dir>/columns.json (column_map).

Splits: train, dev, test (as the official files). Build with
  tfds build rahf_jax/data/richhf18k --manual_dir=M --data_dir=D
or `import rahf_jax.data; tfds.builder("richhf18k", data_dir=D).download_and_prepare(
download_config=tfds.download.DownloadConfig(manual_dir=M))`. What goes in M: README.md.
Bad inputs are counted in `build_report.json` next to the dataset (rahf_jax.data.build_report).
A damaged or absent label file ends the build with one line naming the file and the fix
(build_errors), and leaves nothing in data_dir.
"""

import logging
import os
import socket

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from rahf_jax import features
from rahf_jax.data import build_report, image_sources
from rahf_jax.data import words as words_lib
from rahf_jax.data.richhf18k import (
  build_errors,
  label_records,
  media_checks,
  mirror_build,
  mirror_tables,
)

SPLITS = ("train", "dev", "test")
LABEL_FILES = {split: f"{split}.tfrecord" for split in SPLITS}
LABEL_URL = "https://media.githubusercontent.com/media/google-research-datasets/richhf-18k/main/"
LABEL_URLS = {split: LABEL_URL + name for split, name in LABEL_FILES.items()}
LABEL_HOST = "media.githubusercontent.com"
LABEL_HOST_TIMEOUT_S = 5.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
HEATMAP_FLAGS = tuple(
  f"heatmap_{name}_{flag}" for name in features.HEATMAP_TYPES for flag in ("resized", "reencoded")
)
HEATMAP_SHAPE = (media_checks.HEATMAP_SIZE, media_checks.HEATMAP_SIZE, 1)

EXPECTED_LAYOUT = (
  "expected manual_dir layout: train.tfrecord, dev.tfrecord, test.tfrecord (RichHF-18K labels; "
  "when absent, downloaded and checksum-checked if the host answers) and either "
  "pickapic/*.parquet (columns caption, image_0_uid, image_1_uid, jpg_0, jpg_1) or "
  "images/<uid>.<ext> + captions.jsonl "
  '({"uid": ..., "caption": ...} per line); or all-in-one mirror tables '
  "tables/<split>*.parquet (image, caption, filename and the label fields per row; the label "
  "files then optional); see rahf_jax/data/richhf18k/README.md"
)


def _feature_dict() -> tfds.features.FeaturesDict:
  heatmap = lambda: tfds.features.Image(shape=HEATMAP_SHAPE, encoding_format="png")
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=(None, None, 3)),
      "prompt": tfds.features.Text(),
      "filename": tfds.features.Text(),
      "uid": tfds.features.Text(),
      **{name: tfds.features.Scalar(dtype=np.float32) for name in features.SCORE_TYPES},
      **{f"heatmap_{name}": heatmap() for name in features.HEATMAP_TYPES},
      "words": tfds.features.Sequence(tfds.features.Text()),
      "word_labels": tfds.features.Sequence(tfds.features.Scalar(dtype=np.int32)),
      "word_labels_valid": tfds.features.Scalar(dtype=np.bool_),
      "target": tfds.features.Text(),
      **{flag: tfds.features.Scalar(dtype=np.bool_) for flag in HEATMAP_FLAGS},
    }
  )


def _unreachable(host: str) -> str | None:
  """None if a TCP connection to host:443 opens within LABEL_HOST_TIMEOUT_S, else the reason."""
  try:
    socket.create_connection((host, 443), timeout=LABEL_HOST_TIMEOUT_S).close()
  except OSError as e:
    return build_errors.one_line(e) or type(e).__name__
  return None


def _tree(path: epath.Path) -> set[str]:
  """`path` and everything under it (empty if it does not exist)."""
  if not path.exists():
    return set()
  out = {os.fspath(path)}
  if path.is_dir():
    for child in path.iterdir():
      out |= _tree(child)
  return out


def _remove_new(path: epath.Path, existed: set[str], recursive: bool) -> None:
  """Removes `path` if a failed build made it and left it empty (or it is a temp dir)."""
  if not path.exists() or not path.is_dir():
    return
  new = os.fspath(path) not in existed
  if new and (".tmp." in path.name or "incomplete" in path.name):
    path.rmtree(missing_ok=True)
    return
  if recursive:
    for child in list(path.iterdir()):
      _remove_new(child, existed, recursive=True)
  if new and not any(path.iterdir()):
    path.rmdir()


class Builder(tfds.core.GeneratorBasedBuilder):
  """RichHF-18K (CVPR 2024) rich human feedback labels with Pick-a-Pic images."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
    "1.0.0": "Labels joined with Pick-a-Pic images; build report.",
    "1.1.0": (
      "Per-example flags heatmap_<type>_resized / heatmap_<type>_reencoded; 16-bit heatmaps "
      "scaled to 8 bits; records without a caption skipped and counted as missing_caption."
    ),
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put in manual_dir (full text: rahf_jax/data/richhf18k/README.md):
    train.tfrecord, dev.tfrecord, test.tfrecord   RichHF-18K labels (optional: downloaded from
        github.com/google-research-datasets/richhf-18k and checked against checksums.tsv if absent
        and the host can be reached)
    and the Pick-a-Pic v1 images and prompts, one of:
    pickapic/*.parquet   Pick-a-Pic parquet shards (caption, image_0_uid, image_1_uid, jpg_0, jpg_1)
    images/<uid>.<ext> and captions.jsonl   one {"uid": ..., "caption": ...} JSON object per line
  or, instead of both, all-in-one mirror tables (image, caption, filename, labels per row):
    tables/<split>*.parquet   split train, dev or validation, test; label files then optional
                              (when present, the tables' labels are cross-checked against them)
  Other parquet column names: columns.json, e.g. {"columns": {"caption": "prompt"}}.
  For the synthetic stand-in: python data_prep/make_synthetic_richhf.py --out <manual_dir>
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      features=_feature_dict(),
      supervised_keys=None,
      homepage="https://github.com/google-research-datasets/richhf-18k",
    )

  def download_and_prepare(self, **kwargs) -> None:
    """TFDS's download_and_prepare; a failed build leaves no new folder in data_dir.

    An uncaught build_errors.BuildInputError (e.g. from `tfds build`) prints as one line.
    """
    root = epath.Path(self.data_dir_root)
    downloads = epath.Path(kwargs.get("download_dir") or root / "downloads")
    # Deepest first; the first two belong to this dataset and are cleaned recursively.
    watched = [root / self.name, downloads / self.name, downloads / "extracted", downloads, root]
    existed = _tree(watched[0]) | _tree(watched[1])
    existed |= {os.fspath(p) for p in watched[2:] if p.exists()}
    try:
      super().download_and_prepare(**kwargs)
    except BaseException as e:
      for i, path in enumerate(watched):
        _remove_new(path, existed, recursive=i < 2)
      if isinstance(e, build_errors.BuildInputError):
        build_errors.install_excepthook()
      raise

  def _label_paths(self, dl_manager, manual_dir: epath.Path) -> dict[str, epath.Path]:
    """The three label files: from manual_dir, else downloaded (only if the host answers)."""
    label_paths = {s: manual_dir / name for s, name in LABEL_FILES.items()}
    absent = {s: LABEL_URLS[s] for s, p in label_paths.items() if not p.exists()}
    if not absent:
      return label_paths
    names = ", ".join(LABEL_FILES[s] for s in sorted(absent, key=SPLITS.index))
    fix = (
      f"download them from github.com/google-research-datasets/richhf-18k and put them in "
      f"{manual_dir} (see rahf_jax/data/richhf18k/README.md)"
    )
    proxied = any(os.environ.get(v) for v in PROXY_VARIABLES)
    reason = None if proxied else _unreachable(LABEL_HOST)
    if reason:
      raise build_errors.MissingInputError(
        f"richhf18k: {names} not in manual_dir {manual_dir} and {LABEL_HOST} cannot be reached "
        f"({reason}); {fix}."
      )
    logging.info("richhf18k: %s not in manual_dir; downloading.", names)
    try:
      label_paths.update(dl_manager.download(absent))
    except Exception as e:  # pylint: disable=broad-except  # any network/checksum failure
      raise build_errors.MissingInputError(
        f"richhf18k: could not download {names} ({build_errors.one_line(e)}); {fix}."
      ) from None
    return label_paths

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    try:
      manual_dir = epath.Path(dl_manager.manual_dir)
    except AssertionError:
      raise build_errors.MissingInputError(
        f"richhf18k: manual_dir is missing or empty; {EXPECTED_LAYOUT}."
      ) from None
    tables = mirror_tables.find_tables(os.fspath(manual_dir))
    if tables is not None:
      return self._table_split_generators(manual_dir, tables)
    try:
      source = image_sources.find_image_source(os.fspath(manual_dir))
    except FileNotFoundError as e:
      raise build_errors.MissingInputError(f"richhf18k: {e}") from None
    label_paths = self._label_paths(dl_manager, manual_dir)
    all_uids = set()
    for path in label_paths.values():
      for serialized in label_records.read_tfrecord(path):
        try:
          all_uids.add(label_records.parse_record(serialized).uid)
        except (KeyError, ValueError):
          pass  # counted as malformed_record by the split's generator
    logging.info("richhf18k: images from %s", source.describe())
    source.index(all_uids)
    self._reports = {}
    self._report_extra = {"image_source": source.describe(), "manual_dir": os.fspath(manual_dir)}
    return {
      split: self._generate_examples(split, os.fspath(label_paths[split]), source)
      for split in SPLITS
    }

  def _table_split_generators(self, manual_dir: epath.Path, tables):
    """Splits from mirror tables; labels cross-checked where the official file is present."""
    label_paths = {s: manual_dir / n for s, n in LABEL_FILES.items() if (manual_dir / n).exists()}
    absent = [s for s in SPLITS if s not in tables.files and s not in label_paths]
    if absent:
      raise build_errors.MissingInputError(
        f"richhf18k: no table for split(s) {', '.join(absent)} under {tables.root} and no "
        f"{', '.join(LABEL_FILES[s] for s in absent)} in manual_dir {manual_dir}; add "
        f"tables/<split>*.parquet (split train, dev or validation, test) for each split."
      )
    logging.info("richhf18k: images and labels from %s", tables.describe())
    self._reports = {}
    self._report_extra = {
      "image_source": tables.describe(),
      "manual_dir": os.fspath(manual_dir),
      "labels": {
        s: f"{LABEL_FILES[s]}, cross-checked with the tables" if s in label_paths else "tables"
        for s in SPLITS
      },
    }
    return {
      split: self._generate_table_examples(split, tables, label_paths.get(split))
      for split in SPLITS
    }

  def _generate_table_examples(self, split, tables, label_path):
    report = build_report.SplitReport(split)
    rows = tables.iter_rows(split)
    if label_path is None:
      yield from mirror_build.iter_table_examples(rows, report, self._make_example)
    else:
      yield from mirror_build.iter_checked_examples(
        rows, os.fspath(label_path), report, self._make_example
      )
    self._write_report(split, report)

  def _write_report(self, split, report):
    self._reports[split] = report
    build_report.write_report(
      self._reports,
      self.data_dir,  # the build's temporary dir, renamed to final_directory at the end
      extra=self._report_extra,
      log_splits=(split,),
      final_directory=os.fspath(epath.Path(self.data_dir_root) / self.name / str(self.version)),
    )

  def _generate_examples(self, split, label_path, source):
    report = build_report.SplitReport(split)
    by_uid = mirror_build.index_label_file(label_path, report)  # uid -> [(index, serialized)]
    seen = set()
    for uid, image_bytes, caption in source.iter_images(list(by_uid)):
      seen.add(uid)
      if caption is None or not caption.strip():
        for _ in by_uid[uid]:
          report.add("missing_caption", uid)
        continue
      image, issue = media_checks.check_image(image_bytes)
      for index, serialized in by_uid[uid]:
        if issue:
          report.add(issue, uid)
        if image is None:
          continue
        example = self._make_example(label_records.parse_record(serialized), image, caption, report)
        if example is not None:
          report.examples_written += 1
          yield index, example
    for uid in sorted(set(by_uid) - seen):
      for _ in by_uid[uid]:
        report.add("missing_image", uid)
    self._write_report(split, report)

  def _make_example(self, record, image, caption, report):
    """The TFDS example for one label record, or None (counted) when it cannot be built."""
    uid = record.uid
    heatmaps, flags = {}, {}
    for name, data in (
      ("implausibility", record.artifact_map),
      ("misalignment", record.misalignment_map),
    ):
      heatmaps[name], issue = media_checks.check_heatmap(data)
      if issue:
        report.add(issue, uid)
      if heatmaps[name] is None:
        return None
      for flag in ("resized", "reencoded"):
        flags[f"heatmap_{name}_{flag}"] = issue == f"heatmap_{flag}"
    paired = words_lib.pair_words_and_labels(caption, record.label_string)
    if not paired.valid:
      report.add("label_count_mismatch", uid)
    if not paired.words:
      report.add("empty_prompt", uid)
    if not caption.isascii():
      report.add("non_ascii_prompt", uid)
    return {
      "image": image,
      "prompt": caption,
      "filename": record.filename,
      "uid": uid,
      **{name: record.scores[key] for name, key in features.SCORE_SOURCE_KEYS.items()},
      **{f"heatmap_{name}": data for name, data in heatmaps.items()},
      "words": paired.words,
      "word_labels": paired.labels,
      "word_labels_valid": paired.valid,
      "target": paired.target,
      **flags,
    }
