"""Evaluation protocols: the paper's metric definitions, or the PyTorch reproduction's own choices.

`paper` (the default) computes the metrics as the paper defines them, on the
batches of the SeqIO task. `reproduction` applies the choices of the PyTorch reproduction
(github.com/youweiliang/RichHF: train.py `evaluate_model`, called by `inference.py --eval`;
metrics.py; get_dataset.py) wherever they change a reported figure, so our numbers can be held
against its published table line by line:

  heatmap ground truth  train.py `HuggingFaceDataset`: the uint8 512x512 map is opened with PIL,
                        resized by torchvision `Resize((image_size, image_size))` (PIL bilinear
                        on the uint8 map, rounded to uint8) to the model's output size, then
                        `ToTensor` divides by 255. Paper protocol: the data layer's TF area
                        resize of the float map.
  MSE (all)             train.py: `loss/<heatmap>` is `np.mean` over batches of `nn.MSELoss`
                        (the mean over the batch's maps and pixels), with inference.py's default
                        `--batch_size 64` and the test loader unshuffled: a mean of per-batch
                        means, in which the last, smaller batch weighs as much as a full one.
                        Paper protocol: the mean of the per-map MSEs.
  MSE (GT=0)            train.py: per batch, metrics.py `mse_loss` of the maps whose resized
                        ground truth sums to 0 (one MSE per map), concatenated over batches and
                        averaged: the per-map mean over the GT=0 maps, as in the paper protocol,
                        but the GT=0 subset is decided on the PIL-resized uint8 map.
  AUC-Judd              metrics.py `AUC_Judd_single`: false-positive count `aboveth - i` with a
                        0-based i (one more than the definition's), see
                        heatmap_metrics.auc_judd_single(match_pytorch_reproduction=True).
  PLCC / SRCC           train.py: `scipy.stats.pearsonr` / `spearmanr` over the split; a
                        constant vector gives NaN there (recorded as None); the paper protocol
                        records 0.0 for it.
  misaligned words      the reference is get_dataset.py's `labeled_prompt`: the prompt's words
                        zipped with the label string (zip stops at the shorter one, so a count
                        mismatch is kept, truncated), each word labelled 0 suffixed `_0`; every
                        example is scored (train.py `text_alignment(pred_texts, gt_texts)` over
                        the whole split). The prediction is generated with model.py
                        `max_new_tokens=100`. Paper protocol: the reference is the tokenised
                        target decoded back (cut at target_len tokens), predictions are decoded
                        to target_len tokens, and examples whose label count differs from the
                        word count are left out.
  model inputs          train.py: the model reads `clean_prompt` (get_dataset.py: the prompt's
                        words joined by single spaces, punctuation delimiters dropped) and the
                        image through the ViT image processor (PIL bilinear resize of the uint8
                        image to the input size, then x / 127.5 - 1). Paper protocol: the raw
                        caption and the data layer's TF antialiased bilinear resize.

The other figures are defined the same way in both: CC, KLD (eps 1e-8 in both
normalisations and the log), SIM, NSS (unbiased std, eps 1e-8, mean over gt > 0 pixels) per
GT>0 map, averaged over all GT>0 maps (torch.cat of the per-map values, then the mean); the
words' per-example precision/recall/F1 of the positive class (sklearn `classification_report`,
`zero_division=0`), averaged over examples. The reproduction computes the heatmap metrics in
float32 torch tensors and these modules in float64, a difference far below the printed digits.
"""

from collections.abc import Sequence

from rahf_jax import features

PAPER = "paper"
REPRODUCTION = "reproduction"
PROTOCOLS = (PAPER, REPRODUCTION)

# inference.py: `--batch_size` default 64 (the test loader, shuffle=False).
REPRODUCTION_BATCH_SIZE = 64
# model.py: `forward(..., max_new_tokens=100)`, passed to `t5.generate`.
REPRODUCTION_MAX_NEW_TOKENS = 100
# get_dataset.py `match_misalignment_label_to_token`: a word labelled 0 gets the `_0` suffix.
MISALIGNED_LABEL = 0


def check_protocol(protocol: str) -> str:
  """Returns `protocol` if it is one of PROTOCOLS, else raises a one-line ValueError."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"unknown evaluation protocol {protocol!r}; use one of {PROTOCOLS}.")
  return protocol


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def labelled_prompt(words: Sequence[str | bytes], labels: Sequence[int]) -> str:
  """The reproduction's reference text: words zipped with labels (the shorter one decides),
  each word labelled 0 suffixed `_0`, joined by single spaces."""
  pairs = zip(words, labels, strict=False)  # a count mismatch is truncated to the shorter
  return " ".join(
    _text(w) + features.MISALIGNED_SUFFIX if int(label) == MISALIGNED_LABEL else _text(w)
    for w, label in pairs
  )


def clean_prompt(words: Sequence[str | bytes]) -> str:
  """The reproduction's model prompt: the prompt's words joined by single spaces."""
  return " ".join(_text(w) for w in words)
