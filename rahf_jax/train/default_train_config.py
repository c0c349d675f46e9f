"""Every training field with its default, for configs/ to compose with a model config.

Usage (in a configs/ file):

  from rahf_jax.train.default_train_config import train_config_defaults
  config = train_config_defaults()
  config.model = ...  # the model room's config
  config.num_train_steps = 20_000
"""

import ml_collections


def train_config_defaults() -> ml_collections.ConfigDict:
  """Returns a ConfigDict with every field `train_and_evaluate` reads, commented."""
  c = ml_collections.ConfigDict()

  # Model: `size` and `variant` are passed to rahf_jax.models.get_model_config(size, variant);
  # `overrides` (a dict) is applied on top of the model config it returns.
  c.model = ml_collections.ConfigDict()
  c.model.size = "tiny"  # test | tiny (the demo's) | B16_t5base_384 | L16_t5base_384
  c.model.variant = "multihead"  # "multihead" | "augmented" (rahf_jax.features.VARIANTS)
  c.model.overrides = ml_collections.ConfigDict()

  # Pretrained starts (rahf_jax/train/init_weights.py), applied when a run starts from step 0;
  # "" keeps the random init. The log lists which parameter groups were loaded.
  c.init = ml_collections.ConfigDict()
  # ViT: a big_vision/Augreg .npz, or a Hugging Face ViT folder / model.safetensors / .bin.
  c.init.vit = ""
  # T5 (token embedding, encoder, decoder): a Hugging Face T5 folder / model.safetensors / .bin,
  # or a T5X checkpoint directory (needs t5x).
  c.init.t5 = ""
  # The whole RAHF: a workdir (ours or `rahf-jax convert`'s) or the reproduction's rahf_model.pt.
  c.init.rahf = ""

  # Optimisation (rahf_jax.train.optimizer).
  c.learning_rate = 2e-5  # peak learning rate after warmup
  c.warmup_steps = 500  # linear warmup from 0 to learning_rate, in optimizer updates
  c.num_train_steps = 20_000  # total train steps (micro-steps when grad_accum_steps > 1)
  c.end_lr = 1e-5  # cosine decay ends at this value at num_train_steps
  c.weight_decay = 2e-3  # AdamW decoupled weight decay (not on norms/biases/1-d params)
  c.adam_b1 = 0.9
  c.adam_b2 = 0.999
  c.adam_eps = 1e-8
  c.vit_lr_multiplier = 1.0  # learning-rate multiplier for the ViT image encoder's params
  # Regex searched in the "/"-joined parameter path to find the ViT params.
  c.vit_param_regex = r"(^|/)(vit|image_encoder|img)(/|_|$)"
  c.grad_clip_norm = 1.0  # global-norm gradient clipping; <= 0 disables it
  c.grad_accum_steps = 1  # > 1: optax.MultiSteps, one update every k micro-batches
  # > 1: each train step runs its batch as k slices in turn (lax.scan) and adds their gradients
  # before its one update: the same loss and gradients as one pass (rahf_jax/train/steps.py),
  # with 1/k of the activations in memory; what lets the paper's batch 256 fit a 16 GiB v5e chip
  # (`rahf-jax plan` shows the memory per chip). batch_size must divide into k x data x fsdp.
  c.num_microbatches = 1
  # A train step compiled ahead of time for these devices (`rahf-jax plan --save_executables`
  # writes DIR/train.executable): the run loads it instead of compiling, as on a pod where the
  # big step takes minutes to compile. "" compiles as usual.
  c.compiled_train_step = ""
  # Dtype of the train state's params, the ones the model computes with:
  #   "float32"   fp32 params and AdamW moments (the model casts weights to its compute dtype);
  #   "bfloat16"  bf16 params; the optimizer state keeps fp32 master weights and fp32 moments,
  #               updates the master weights in fp32 and stores them cast down, so updates below
  #               bf16's resolution still accumulate. The state grows from 12 to 14 bytes per
  #               parameter and the gradients the model returns are bf16; collectives move the
  #               same bytes as with "float32", where XLA already gathers bf16-cast shards.
  # A run resumes only under the value it was started with (the optimizer state differs).
  # (model.overrides.param_dtype is the model's init dtype; leave it float32.)
  c.param_dtype = "float32"

  # Batches and schedule of side jobs (all in train steps).
  c.batch_size = 8  # global batch size (all hosts, all devices) of one train step
  c.eval_batch_size = 8  # global batch size for dev evaluation
  c.num_eval_batches = -1  # dev batches per evaluation; -1 = the whole split once
  c.log_every = 50  # write train metrics and the progress line
  c.eval_every = 1000  # dev evaluation (loss terms + the eval_fn hook); 0 = never
  c.checkpoint_every = 1000  # periodic (async) checkpoint
  c.keep_checkpoints = 3  # newest N periodic checkpoints kept
  c.best_metric = "dev/loss"  # metric that picks the best checkpoint ("" = none kept)
  c.best_mode = "min"  # "min" or "max" for best_metric
  c.nan_check_every = 1  # check the train loss for NaN/Inf every N steps (host sync)
  c.seed = 0  # parameter init, dropout keys (folded with the step), synthetic data

  # Sharding: mesh axis sizes (-1 = fill with the remaining devices) and the name of the
  # logical rules in rahf_jax.sharding.partitioning.LOGICAL_AXIS_RULES ("dp", "fsdp", "fsdp_tp").
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.model = 1
  c.logical_rules = "dp"
  c.distributed = False  # call jax.distributed.initialize() first (multi-host)

  # Loss weights: one per kind; an entry named after an output type (e.g. "aesthetics")
  # overrides its kind's weight for that type.
  c.loss_weights = ml_collections.ConfigDict()
  c.loss_weights.heatmap = 1.0
  c.loss_weights.score = 1.0
  c.loss_weights.text = 1.0
  # Per-pixel heatmap loss: "mse" (the paper's) | "bce" (cross-entropy; train/losses.py).
  c.heatmap_loss = "mse"

  # Data.
  c.data = ml_collections.ConfigDict()
  c.data.source = "tfds"  # "tfds" (the SeqIO pipeline) or "synthetic" (in-memory, no TF)
  c.data.task_name = ""  # SeqIO task; "" = the default task for model.variant
  c.data.data_dir = ""  # TFDS data_dir; "" = the TFDS default
  # SentencePiece vocabulary of prompts and targets: "t5" (the standard T5 vocabulary, for the
  # T5-base sizes), "demo" (the small shipped one, for the tiny size) or a .model path.
  c.data.vocabulary = "t5"
  c.data.train_split = "train"
  c.data.eval_split = "dev"
  c.data.shuffle = True  # shuffle the train split (deterministic given seed)
  c.data.prompt_len = 64  # feature lengths: prompt_ids
  c.data.target_len = 64  # decoder_input_ids / decoder_target_ids / decoder_loss_weights
  c.data.num_synthetic_batches = 8  # synthetic source: distinct batches, cycled
  return c
