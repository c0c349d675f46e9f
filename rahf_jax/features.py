"""Names shared by every room: output types, dataset keys and model features.

Pure Python (no JAX, no TensorFlow) so that data, models, training, evaluation
and inference agree on one vocabulary of names.

Model features (what the feature converter emits and the model/losses consume;
all fixed-length, batch-major):

  image               float32 [B, H, W, 3]  pixel values scaled to [-1, 1]
  prompt_ids          int32   [B, Lp]       SentencePiece ids, PAD_ID padded, EOS_ID ended
  decoder_input_ids   int32   [B, Lt]       targets shifted right (starts with PAD_ID)
  decoder_target_ids  int32   [B, Lt]       ids of the `_0`-marked prompt, EOS ended
  decoder_loss_weights float32 [B, Lt]      1 on real target tokens, 0 on padding
Multi-head variant, one per type:
  heatmap_<h>         float32 [B, Ho, Wo]   in [0, 1], h in HEATMAP_TYPES
  score_<s>           float32 [B]           in [0, 1], s in SCORE_TYPES
Augmented-prompt variant (one example per (image, prompt, output type)):
  output_type         int32   [B]           index into AUGMENTED_OUTPUT_TYPES
  heatmap             float32 [B, Ho, Wo]   target of this example's heatmap type (zeros otherwise)
  score               float32 [B]           target of this example's score type (0 otherwise)
"""

import re

# Output types, in the paper's order.
HEATMAP_TYPES = ("implausibility", "misalignment")
SCORE_TYPES = ("plausibility", "alignment", "aesthetics", "overall")
WORDS_TYPE = "misaligned_words"

# RichHF-18K's TFRecord keys for each output type (the official release's eight keys).
HEATMAP_SOURCE_KEYS = {
  "implausibility": "artifact_map",
  "misalignment": "misalignment_map",
}
SCORE_SOURCE_KEYS = {
  "plausibility": "artifact_score",
  "alignment": "misalignment_score",
  "aesthetics": "aesthetics_score",
  "overall": "overall_score",
}
LABELS_SOURCE_KEY = "prompt_misalignment_label"
FILENAME_SOURCE_KEY = "filename"

# The augmented-prompt variant writes the output type in front of the prompt and
# runs the encoder once per type; only the matching head/decoder term is trained.
AUGMENTED_OUTPUT_TYPES = HEATMAP_TYPES + SCORE_TYPES + (WORDS_TYPE,)
AUGMENTED_PROMPT_PREFIXES = {
  "implausibility": "HEATMAP: implausibility",
  "misalignment": "HEATMAP: misalignment",
  "plausibility": "SCORE: plausibility",
  "alignment": "SCORE: alignment",
  "aesthetics": "SCORE: aesthetics",
  "overall": "SCORE: overall",
  WORDS_TYPE: "TEXT: misaligned words",
}


def augmented_prompt(output_type: str, prompt: str) -> str:
  """The augmented-prompt variant's encoder text for one output type."""
  return f"{AUGMENTED_PROMPT_PREFIXES[output_type]} | {prompt}"


# Misaligned words are marked with this suffix in the decoder target.
MISALIGNED_SUFFIX = "_0"

# RichHF-18K's word splitting (google-research/richhf_18k, match_label_to_token.py): split the
# prompt on each of the characters `,.?!":;` and on the space, and drop empty pieces.
WORD_DELIMITERS = ',.?!":; '
_WORD_SPLIT_RE = re.compile("[" + re.escape(WORD_DELIMITERS) + "]")


def split_prompt_words(prompt: str) -> list[str]:
  """The prompt's words exactly as RichHF-18K's labels count them."""
  return [w for w in _WORD_SPLIT_RE.split(prompt) if w]


# T5 vocabulary conventions.
PAD_ID = 0
EOS_ID = 1

# Variants.
MULTI_HEAD = "multihead"
AUGMENTED_PROMPT = "augmented"
VARIANTS = (MULTI_HEAD, AUGMENTED_PROMPT)
