"""Trains the small demo/test SentencePiece vocabulary shipped in rahf_jax/data/vocab/.

  python data_prep/train_demo_vocab.py            # rewrites rahf_jax/data/vocab/demo_spm.*

Corpus (deterministic): prompts of synthetic scenes drawn from the caption grammar of
data_prep/make_synthetic_richhf.py (rahf_jax/data/synthetic_scenes.make_scene), each also as
its `_0`-marked decoder target, and each behind every augmented-prompt prefix of
rahf_jax/features.py. Model: BPE (a unigram model of this size keeps upper-case prefix words
such as HEATMAP as single letters), T5's ids (pad=0, eos=1, unk=2, no bos), `_0` as one
user-defined piece (so `yellow_0` round-trips), byte fallback for anything unseen (non-ASCII
prompts, other words), identity normalisation (text is kept as written; T5's NFKC table alone
would add ~240 KB), one thread (reproducible).
"""

import argparse
import os
import sys

import numpy as np
import sentencepiece as spm

try:
  from rahf_jax import features
  from rahf_jax.data import synthetic_scenes, vocab, words
except ImportError:  # run from a checkout without `pip install -e .`
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from rahf_jax import features
  from rahf_jax.data import synthetic_scenes, vocab, words

# Extra lines so that common prompt punctuation and digits get pieces of their own.
EXTRA_LINES = (
  'a "dreamy", picture: of two objects; really? yes! it\'s a well-drawn one 1 2 3 4 5 6 7 8 9 0',
  "an image showing a red circle and a blue square, green background.",
)


def corpus(num_scenes: int, seed: int) -> list[str]:
  """The training sentences (see the module docstring)."""
  lines = list(EXTRA_LINES)
  rng = np.random.default_rng(seed)
  for _ in range(num_scenes):
    scene = synthetic_scenes.make_scene(rng, size=16)
    lines.append(scene.prompt)
    lines.append(words.mark_words(scene.words, scene.labels))
  prompts = lines[len(EXTRA_LINES) :: 2]
  for i, t in enumerate(features.AUGMENTED_OUTPUT_TYPES):
    lines.extend(
      features.augmented_prompt(t, p) for p in prompts[i :: len(features.AUGMENTED_OUTPUT_TYPES)]
    )
  return lines


def train(out_prefix: str, *, vocab_size: int, num_scenes: int, seed: int) -> str:
  """Trains the model; writes `<out_prefix>.model` and `.vocab`; returns the model path."""
  lines = corpus(num_scenes, seed)
  os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines),
    model_prefix=out_prefix,
    model_type="bpe",
    vocab_size=vocab_size,
    pad_id=features.PAD_ID,
    eos_id=features.EOS_ID,
    unk_id=2,
    bos_id=-1,
    user_defined_symbols=[features.MISALIGNED_SUFFIX],
    byte_fallback=True,
    character_coverage=1.0,
    normalization_rule_name="identity",
    hard_vocab_limit=False,
    shuffle_input_sentence=False,
    num_threads=1,
    minloglevel=2,
  )
  return out_prefix + ".model"


def main(argv=None) -> None:
  default_prefix = os.path.splitext(vocab.DEMO_VOCAB_PATH)[0]
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--out_prefix", default=default_prefix, help="writes <prefix>.model/.vocab")
  p.add_argument("--vocab_size", type=int, default=vocab.DEMO_VOCAB_SIZE)
  p.add_argument("--num_scenes", type=int, default=3000)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  path = train(
    args.out_prefix, vocab_size=args.vocab_size, num_scenes=args.num_scenes, seed=args.seed
  )
  sp = spm.SentencePieceProcessor(model_file=path)
  print(f"wrote {path}: {sp.get_piece_size()} pieces, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
  main()
