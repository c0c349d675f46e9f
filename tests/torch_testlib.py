"""A small PyTorch RAHF (bench/torch_rahf.py) for the conversion and pretrained-start tests.

Random weights, moved off their init values (norm scales of 1, zero biases) so that every
parameter's mapping is exercised; the demo vocabulary's 512 ids.
"""

import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import torch_rahf  # noqa: E402

VIT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
           image_size=32, patch_size=8)  # fmt: skip
T5 = dict(vocab_size=512, d_model=64, d_kv=32, d_ff=128, num_layers=2, num_heads=2,
          feed_forward_proj="relu", tie_word_embeddings=True)  # fmt: skip
HEATMAP = dict(pre=(16, 16), up=(16, 8, 8, 8), final=8)
# Score convs end at 4 channels (the reproduction's: d_model / 64 = 12), so the channel-first
# flatten before the first Linear is a real permutation.
SCORE_DIVISORS, SCORE_DENSE = (1, 2, 4, 8, 16, 16), (32, 16)


def perturb(module: torch.nn.Module, seed: int) -> None:
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in module.parameters():
      p.add_(0.05 * torch.randn(p.shape, generator=g))


def small_torch_rahf(seed: int = 0) -> "torch_rahf.TorchRAHF":
  torch.manual_seed(seed)
  model = torch_rahf.TorchRAHF(VIT, T5, HEATMAP, score_divisors=SCORE_DIVISORS,
                               score_dense=SCORE_DENSE).eval()  # fmt: skip
  perturb(model, seed + 1)
  model.t5.lm_head.weight = model.t5.shared.weight  # keep the tie after perturbing
  return model
