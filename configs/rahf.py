r"""RAHF training configs: `get_config("<size>,<variant>[,runlocal][,reproduction]")`.

  size     tiny (the demo's) | B16_t5base_384 (the paper's backbones) | L16_t5base_384 (the
           reproduction's) | test (the unit tests' 64-px model); rahf_jax/models/variants.py
  variant  multihead (2 heatmap heads, 4 score heads, decoder) | augmented (type in the prompt)
  runlocal a few steps, for a smoke run of a big size on one host
  reproduction  the PyTorch reproduction's forward pass (decoder reads the prompt part of the
           encoder output; Hugging Face ViT's LayerNorm epsilon 1e-12): for fine-tuning its
           converted checkpoint (`rahf-jax convert`) with the function it was trained as

Runs (the data is the TFDS `richhf18k` build; `make data` makes a synthetic one in demo_out/tfds):

  # The demo's training (tiny, CPU, about 13 minutes on 2 cores with the Makefile's
  # GLIBC_TUNABLES; on the synthetic test split it reaches the figures in README.md's demo
  # section; `make data` builds demo_out/tfds):
  rahf-jax train --config configs/rahf.py:tiny,multihead --workdir /tmp/rahf_tiny \
      --config.data.data_dir=demo_out/tfds

  # The paper's setting (ViT-B/16 + t5-base, batch 256, 20K steps; TPU pod or multi-GPU, FSDP):
  rahf-jax train --config configs/rahf.py:B16_t5base_384,augmented --workdir $WORKDIR \
      --config.data.data_dir=$TFDS_DATA_DIR --config.distributed=True

  # The reproduction's backbones (ViT-L/16 + t5-base), multi-head, as in its README:
  rahf-jax train --config configs/rahf.py:L16_t5base_384,multihead --workdir $WORKDIR \
      --config.data.data_dir=$TFDS_DATA_DIR

Before a pod run, compile its steps for the slice without one (`rahf-jax plan`, libtpu's
compile-only TPU client on any machine): HBM per chip against the chip's, FLOPs, a roofline
estimate and collectives, and exit status 1 with one line when a step does not fit:

  rahf-jax plan --config configs/rahf.py:L16_t5base_384,multihead --topology v5e:8x8 \
      --config.num_microbatches=2
  # v5e chips have 16 GiB: at the paper's batch 256 on 64 of them the L16 train step needs
  # 11.7 GiB per chip with two microbatches (bench/RESULTS.md, "TPU plans").

Pretrained starts (config.init; Hugging Face folders downloaded by hand, e.g. with
`huggingface-cli download google/vit-base-patch16-384 --local-dir $HF/vit-base-patch16-384`):

  # The paper's: ImageNet-21k ViT-B/16 at 384 and t5-base, everything else random.
  rahf-jax train --config configs/rahf.py:B16_t5base_384,augmented --workdir $WORKDIR \
      --config.data.data_dir=$TFDS_DATA_DIR \
      --config.init.vit=$HF/vit-base-patch16-384 --config.init.t5=$HF/t5-base
  # The reproduction's backbones: ViT-L/16 at 384 and t5-base.
  rahf-jax train --config configs/rahf.py:L16_t5base_384,multihead --workdir $WORKDIR \
      --config.data.data_dir=$TFDS_DATA_DIR \
      --config.init.vit=$HF/vit-large-patch16-384 --config.init.t5=$HF/t5-base
  # Fine-tuning the reproduction's trained model (converted with `rahf-jax convert`):
  rahf-jax train --config configs/rahf.py:L16_t5base_384,multihead,reproduction \
      --workdir $WORKDIR --config.data.data_dir=$TFDS_DATA_DIR --config.init.rahf=$CONVERTED

Every training field is documented in rahf_jax/train/default_train_config.py, every model field in
rahf_jax/models/variants.py. Any field can be overridden with `--config.<field>=<value>`.
"""

import ml_collections

from rahf_jax import features
from rahf_jax.models.variants import MODEL_SIZES, get_model_config
from rahf_jax.train.default_train_config import train_config_defaults


def get_config(arg: str = "tiny,multihead") -> ml_collections.ConfigDict:
  """The config named by `arg` ("<size>,<variant>[,runlocal]")."""
  parts = [a.strip() for a in arg.split(",")]
  size, variant, flags = parts[0], (parts[1:2] or [features.MULTI_HEAD])[0], parts[2:]
  if size not in MODEL_SIZES:
    raise ValueError(f"config size {size!r} unknown; use one of {sorted(MODEL_SIZES)}.")
  if variant not in features.VARIANTS:
    raise ValueError(f"config variant {variant!r} unknown; use one of {features.VARIANTS}.")
  unknown = set(flags) - {"runlocal", "reproduction"}
  if unknown:
    raise ValueError(
      f"config flags {sorted(unknown)} unknown; the flags are 'runlocal' and 'reproduction'."
    )

  c = train_config_defaults()
  c.model.size = size
  c.model.variant = variant
  # The model fields a run may change from the command line, with the size's values
  # (--config.model.overrides.image_size=96); the others are in rahf_jax/models/variants.py.
  model = get_model_config(size, variant)
  overrides = c.model.overrides
  for field in ("image_size", "dtype", "remat_policy", "decoder_memory"):
    overrides[field] = model[field]
  for group, fields in (
    ("vit", ("layer_norm_epsilon", "patch_size", "depth", "stem", "stem_channels")),
    ("t5", ("num_encoder_layers",)),
    ("score_head", ("pool",)),
    ("heatmap_head", ("init_value",)),
  ):
    overrides[group] = ml_collections.ConfigDict({f: model[group][f] for f in fields})
  if "reproduction" in flags:
    overrides.decoder_memory = "prompt"
    overrides.vit.layer_norm_epsilon = 1e-12

  if size == "tiny":
    # The demo's training on 2 CPU cores (the model: rahf_jax/models/variants.py, "tiny").
    c.batch_size = 32
    c.eval_batch_size = 64
    c.num_train_steps = 1500
    c.warmup_steps = 100
    c.learning_rate = 1e-3
    c.end_lr = 1e-4
    c.weight_decay = 1e-4
    c.log_every = 50
    c.eval_every = 500
    c.checkpoint_every = 500
    c.data.prompt_len = 32
    c.data.target_len = 32
    c.data.vocabulary = "demo"  # the small shipped vocabulary the tiny model's 512 ids match
    # Per-pixel cross-entropy for the maps (the paper has the MSE): under the MSE an annotated
    # pixel's gradient vanishes once a map is ~0 everywhere, and on this data the maps stay blank
    # for the first ~950 steps (cross-entropy: 500-700), which costs plausibility 0.42 against
    # 0.54 on seed 0. Score MSEs (~0.02-0.07) and the maps' cross-entropy (~0.03) are far below
    # the text cross-entropy; these weights give the shared encoder a usable gradient from the
    # heads.
    c.heatmap_loss = "bce"
    c.loss_weights.heatmap = 30.0
    c.loss_weights.score = 5.0
    c.adam_b2 = 0.99  # a second-moment memory of ~100 steps, for a run of 1,500
  else:
    # The paper's schedule (batch 256, 20K steps, AdamW) with the reproduction's learning rates.
    c.batch_size = 256
    c.eval_batch_size = 256
    c.num_train_steps = 20_000
    c.warmup_steps = 500
    c.learning_rate = 2e-5
    c.end_lr = 1e-5
    c.weight_decay = 2e-3
    c.log_every = 50
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.logical_rules = "fsdp"
    c.data.prompt_len = 64
    c.data.target_len = 64
    if variant == features.AUGMENTED_PROMPT:
      # Room for the output-type prefix written in front of the prompt.
      c.data.prompt_len = 72

  if "runlocal" in flags:
    c.batch_size = 8
    c.eval_batch_size = 8
    c.num_train_steps = 10
    c.warmup_steps = 2
    c.log_every = 1
    c.eval_every = 5
    c.checkpoint_every = 5
    c.num_eval_batches = 2
  return c
