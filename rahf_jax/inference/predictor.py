"""`Predictor`: a trained RAHF checkpoint -> scores, heatmaps and the `_0`-marked prompt.

  predictor = Predictor.from_workdir("/tmp/rahf_tiny")  # the best checkpoint, else the newest
  preds = predictor.predict([image_uint8_hw3], ["a red circle on a blue background"])
  preds[0] == {"scores": {...}, "heatmaps": {...: float32 [Ho, Wo]}, "misaligned_words": "...",
               "misaligned_prompt_words": [...]}  # the marked words that are prompt words

`predict_batch` takes model features (as the data pipeline yields them) and returns flat arrays
(rahf_jax.inference.postprocess.output_arrays) plus the decoded ids, for evaluation.

Decoding (`decoding=`): "constrained" (the default) copies the prompt's words and lets the decoder
choose only where the `_0` marks go (rahf_jax.models.constrained_decode), so the output is always
the prompt, marked (with the mark bias `rahf-jax calibrate` chose on a held-out split, recorded
in the workdir: rahf_jax.inference.mark_bias); "free" is plain greedy decoding over the whole
vocabulary, which can write words that are not in the prompt.

Which checkpoint `from_workdir` opens: the best one (by the run's `best_metric`) where the run
keeps one, as `make demo` and the README's figures evaluate it; else the newest. `best=False`
opens the newest, `best=True` the best. Its mark bias is the one `rahf-jax calibrate` recorded
for these parameters (matched by step and a digest of the values), whichever folder holds them.

Compute dtype: on a CPU backend `from_workdir` computes in float32 whatever the config says
(XLA:CPU runs bfloat16 dots as float32 plus conversions, which is slower); on GPU and TPU it keeps
the config's `model.dtype`. `compute_dtype=` chooses one.
"""

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from PIL import Image

from rahf_jax import features as F
from rahf_jax.inference import postprocess, prompt_copy
from rahf_jax.inference.mark_bias import params_digest, read_mark_bias
from rahf_jax.inference.tokenizer import load_tokenizer
from rahf_jax.models import build_model, build_model_from_config, constrained_decode, greedy_decode
from rahf_jax.sharding import mesh_context, workdir_files
from rahf_jax.sharding.abstract_params import model_and_abstract_params


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config.json of a training run's (or a converted model's) workdir.

  A vocabulary given as a path relative to the workdir (a converted model ships its
  SentencePiece model inside) is made absolute.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} not found: {workdir!r} is not a training workdir; train first with "
      "`rahf-jax train --config ... --workdir DIR` (or `rahf-jax convert` a checkpoint)."
    )
  with open(path, encoding="utf-8") as f:
    config = ml_collections.ConfigDict(json.load(f))
  vocab = config.data.vocabulary
  if not os.path.isabs(vocab) and os.path.exists(os.path.join(workdir, vocab)):
    config.data.vocabulary = os.path.abspath(os.path.join(workdir, vocab))
  return config


def use_best(workdir: str, best: bool | None) -> bool:
  """Whether `from_workdir(workdir, best=best)` opens the best checkpoint: `best` as given;
  None: the best where the run keeps one (the README's figures come from it), else the newest."""
  if best is None:
    return bool(workdir_files.checkpoint_steps(workdir, best=True))
  return bool(best)


def inference_dtype(config_dtype: str, compute_dtype: str | None = None, backend: str | None = None
                    ) -> str:  # fmt: skip
  """The compute dtype to predict with: `compute_dtype` if given; else float32 on a CPU backend
  (`backend`, default jax.default_backend()) and the config's dtype on GPU/TPU."""
  if compute_dtype is not None:
    try:
      return np.dtype(jax.numpy.dtype(compute_dtype)).name
    except TypeError as e:
      raise ValueError(f"compute_dtype {compute_dtype!r} unknown; use float32 or bfloat16.") from e
  backend = jax.default_backend() if backend is None else backend
  return "float32" if backend == "cpu" else str(config_dtype)


@dataclasses.dataclass(frozen=True)
class InferenceSetup:
  """What a predictor builds from a run config alone: no optimizer, no train state."""

  config: ml_collections.ConfigDict
  model_config: ml_collections.ConfigDict
  model: Any
  mesh: jax.sharding.Mesh
  rules: Any
  abstract_params: Any  # ShapeDtypeStructs with the params' shardings

  @classmethod
  def from_config(cls, config, compute_dtype: str | None = None) -> "InferenceSetup":
    """`compute_dtype`: the model's compute dtype instead of the config's (None: the config's)."""
    model_config, model, mesh, rules, abstract = model_and_abstract_params(config)
    if compute_dtype is not None and compute_dtype != model_config.dtype:
      model_config.dtype = compute_dtype  # the same parameters, computed in another dtype
      model = build_model(model_config)
    return cls(config, model_config, model, mesh, rules, abstract)


def preprocess_image(image: np.ndarray | Image.Image, image_size: int) -> np.ndarray:
  """uint8 [H, W, 3] (or PIL) -> float32 [S, S, 3] in [-1, 1] (bilinear, antialiased).

  Matches the data layer's tf.image.resize(bilinear, antialias=True) to within a grey level.
  """
  pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
  pil = pil.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
  return np.asarray(pil, np.float32) / 127.5 - 1.0


DECODINGS = ("constrained", "free")


class Predictor:
  """Runs a restored RAHF model on batches (jitted, sharded over the config's mesh)."""

  def __init__(
    self,
    setup,
    params,
    tokenizer,
    decoding: str = "constrained",
    mark_bias: float = 0.0,
    step: int | None = None,
    checkpoint_kind: str | None = None,
  ):
    if decoding not in DECODINGS:
      raise ValueError(f"decoding {decoding!r} unknown; use one of {DECODINGS}.")
    self.decoding = decoding
    self.mark_bias = float(mark_bias)
    self.step = step  # the checkpoint's step, when restored from a workdir
    self.checkpoint_kind = checkpoint_kind  # "best" or "newest", when restored from a workdir
    self._params_digest: str | None = None
    self.setup = setup
    self.params = params
    self.tokenizer = tokenizer
    self.variant = setup.config.model.variant
    self.model_config = setup.model_config
    model, mesh, rules = setup.model, setup.mesh, setup.rules

    def heads(params, image, prompt_ids):
      return model.apply({"params": params}, image, prompt_ids, method=model.predict_heads)

    def decode(params, image, prompt_ids, max_length):
      return greedy_decode(model, {"params": params}, image, prompt_ids, max_length)

    def decode_copy(params, image, prompt_ids, copy_ids, can_mark, mark_ids, mark_bias):
      variables = {"params": params}
      return constrained_decode(
        model, variables, image, prompt_ids, copy_ids, can_mark, mark_ids, mark_bias
      )

    # As the train/eval steps: traced and run under the mesh and the logical rules.
    self._heads = mesh_context.with_mesh_context(jax.jit(heads), mesh, rules)
    self._decode = mesh_context.with_mesh_context(decode, mesh, rules)
    self._decode_copy = mesh_context.with_mesh_context(decode_copy, mesh, rules)
    self._mesh = mesh

  @classmethod
  def from_workdir(
    cls,
    workdir: str,
    best: bool | None = None,
    step: int | None = None,
    decoding: str = "constrained",
    mark_bias: float | None = None,
    compute_dtype: str | None = None,
  ) -> "Predictor":
    """The params of a workdir's checkpoint: the best one where the run keeps one, else the
    newest (`best=True`: the best, `best=False`: the newest; `step`: that step's of the two).

    Our training runs and converted checkpoints (`rahf-jax convert`) alike; only the
    parameters are read, straight into their shardings. `mark_bias` None: the bias that
    `rahf-jax calibrate` recorded for these parameters (rahf_jax.inference.mark_bias), else 0.
    `compute_dtype` None: float32 on a CPU backend, the config's on GPU/TPU (`inference_dtype`).
    """
    config = load_config(workdir)
    best = use_best(workdir, best)
    model_dtype = build_model_from_config(config)[0].dtype
    setup = InferenceSetup.from_config(config, inference_dtype(model_dtype, compute_dtype))
    params, restored = workdir_files.restore_params(
      workdir, setup.abstract_params, step=step, best=best
    )
    tokenizer = load_tokenizer(config.data.vocabulary)
    kind = "best" if best else "newest"
    predictor = cls(setup, params, tokenizer, decoding, 0.0, step=restored, checkpoint_kind=kind)
    if mark_bias is None:
      mark_bias = read_mark_bias(workdir, restored, predictor.params_digest())
    predictor.mark_bias = float(mark_bias)
    return predictor

  def params_digest(self) -> str:
    """A digest of the parameter values (rahf_jax.inference.mark_bias.params_digest)."""
    if self._params_digest is None:
      self._params_digest = params_digest(self.params)
    return self._params_digest

  @property
  def step_multiple(self) -> int:
    return self._mesh.shape["data"] * self._mesh.shape["fsdp"]

  def _pad(self, batch: Mapping[str, np.ndarray]) -> tuple[dict[str, jax.Array], int]:
    n = len(next(iter(batch.values())))
    pad = -n % self.step_multiple
    padded = {k: np.concatenate([v, np.repeat(v[-1:], pad, 0)]) if pad else v
              for k, v in batch.items()}  # fmt: skip
    return mesh_context.shard_batch(padded, self._mesh), n

  def heads(self, image: np.ndarray, prompt_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Scores and heatmaps only (no decoding): flat output arrays, numpy."""
    batch, n = self._pad({"image": image, "prompt_ids": prompt_ids})
    out = self._heads(self.params, batch["image"], batch["prompt_ids"])
    arrays = postprocess.output_arrays(jax.device_get(out), self.variant)
    return {k: np.asarray(v)[:n] for k, v in arrays.items()}

  def decode(
    self,
    image: np.ndarray,
    prompt_ids: np.ndarray,
    max_length: int,
    prompts: Sequence[str] | None = None,
    mark_bias: float | None = None,
  ) -> np.ndarray:
    """Decoded ids int32 [B, max_length] of the `_0`-marked prompt (`self.decoding`'s way).

    `prompts`: the prompt texts behind prompt_ids, which constrained decoding copies; None reads
    them back from prompt_ids. `mark_bias`: constrained decoding's bias; None: `self.mark_bias`.
    """
    if self.decoding == "free":
      batch, n = self._pad({"image": image, "prompt_ids": prompt_ids})
      ids = self._decode(self.params, batch["image"], batch["prompt_ids"], max_length)
      return np.asarray(jax.device_get(ids))[:n]
    if prompts is None:
      prompts = prompt_copy.prompts_from_ids(prompt_ids, self.tokenizer)
    plan = prompt_copy.copy_plan(prompts, self.tokenizer, max_length)
    batch, n = self._pad(
      {"image": image, "prompt_ids": prompt_ids, "copy_ids": plan.copy_ids,
       "can_mark": plan.can_mark}
    )  # fmt: skip
    ids = self._decode_copy(
      self.params, batch["image"], batch["prompt_ids"], batch["copy_ids"], batch["can_mark"],
      plan.mark_ids, self.mark_bias if mark_bias is None else float(mark_bias),
    )  # fmt: skip
    return np.asarray(jax.device_get(ids))[:n]

  def predict_batch(
    self,
    batch: Mapping[str, np.ndarray],
    decode: bool = True,
    prompts: Sequence[str] | None = None,
  ) -> dict[str, Any]:
    """Model features -> flat output arrays (+ "decoded_ids" when `decode`), numpy.

    Augmented prompt: decoding runs only for the rows whose output_type is the words type.
    `prompts`: one prompt text per row (without an augmented prefix), for constrained decoding;
    None reads them back from prompt_ids.
    """
    arrays = self.heads(batch["image"], batch["prompt_ids"])
    if self.variant == F.AUGMENTED_PROMPT:
      arrays["output_type"] = np.asarray(batch["output_type"])
    if decode:
      max_length = (
        batch["decoder_target_ids"].shape[1]
        if "decoder_target_ids" in batch
        else int(self.setup.config.data.target_len)
      )
      rows = np.arange(len(batch["image"]))
      if self.variant == F.AUGMENTED_PROMPT:
        rows = rows[arrays["output_type"] == F.AUGMENTED_OUTPUT_TYPES.index(F.WORDS_TYPE)]
      ids = np.full((len(batch["image"]), max_length), F.PAD_ID, np.int32)
      if len(rows):
        texts = None if prompts is None else [prompts[i] for i in rows]
        ids[rows] = self.decode(batch["image"][rows], batch["prompt_ids"][rows], max_length, texts)
      arrays["decoded_ids"] = ids
    return arrays

  def encode_prompts(self, prompts: Sequence[str]) -> np.ndarray:
    """Prompts -> int32 [B, prompt_len] ids, EOS-terminated and PAD-padded (truncated to fit)."""
    length = int(self.setup.config.data.prompt_len)
    ids = np.full((len(prompts), length), F.PAD_ID, np.int32)
    for i, prompt in enumerate(prompts):
      row = self.tokenizer.encode(prompt)[: length - 1] + [F.EOS_ID]
      ids[i, : len(row)] = row
    return ids

  def predict(self, images: Sequence[Any], prompts: Sequence[str]) -> list[dict[str, Any]]:
    """Raw images (uint8 [H, W, 3] or PIL) and prompts -> one prediction dict per pair."""
    if len(images) != len(prompts):
      raise ValueError(f"{len(images)} images but {len(prompts)} prompts; pass one prompt each.")
    size = int(self.model_config.image_size)
    pixels = np.stack([preprocess_image(im, size) for im in images])
    if self.variant == F.MULTI_HEAD:
      batch = {"image": pixels, "prompt_ids": self.encode_prompts(prompts)}
      arrays = self.predict_batch(batch, prompts=prompts)
      texts = postprocess.decode_texts(arrays.pop("decoded_ids"), self.tokenizer)
      preds = postprocess.prediction_dicts(arrays, texts, self.variant)
      return _with_prompt_words(preds, prompts)
    # Augmented prompt: one row per (pair, output type), merged back per pair.
    types = F.AUGMENTED_OUTPUT_TYPES
    batch = {
      "image": np.repeat(pixels, len(types), axis=0),
      "prompt_ids": self.encode_prompts([F.augmented_prompt(t, p) for p in prompts for t in types]),
      "output_type": np.tile(np.arange(len(types), dtype=np.int32), len(prompts)),
    }
    arrays = self.predict_batch(batch, prompts=[p for p in prompts for _ in types])
    texts = postprocess.decode_texts(arrays.pop("decoded_ids"), self.tokenizer)
    parts = postprocess.prediction_dicts(arrays, texts, self.variant)
    preds = [postprocess.merge_predictions(parts[i * len(types) : (i + 1) * len(types)])
             for i in range(len(prompts))]  # fmt: skip
    return _with_prompt_words(preds, prompts)


def _with_prompt_words(preds: list[dict], prompts: Sequence[str]) -> list[dict]:
  """Adds "misaligned_prompt_words": the marked words aligned back onto the prompt's own words
  (the decoder may write words that are not in the prompt; those are never reported)."""
  for pred, prompt in zip(preds, prompts, strict=True):
    marked = pred.get(postprocess.WORDS, "")
    pred["misaligned_prompt_words"] = postprocess.misaligned_prompt_words(prompt, marked)
  return preds
