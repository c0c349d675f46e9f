"""Training: losses, optimizer, abstract state, jitted steps, checkpoints and the loop.

Modules (import what you need; nothing here imports TensorFlow):
  default_train_config  train_config_defaults(): every training field, commented
  losses                compute_losses(outputs, batch, variant, loss_weights)
  optimizer             make_optimizer(config), make_schedule(config), decay_mask(params)
  state                 TrainState, get_abstract_state(...), init_state(...)
  steps                 make_train_step(...), make_eval_step(...), shard_batch(batch, mesh)
  checkpointing         Checkpointer (orbax: periodic async keep-N + best by metric)
  synthetic_batches     make_synthetic_batch(model_config, batch_size, prompt_len, target_len, seed)
  input_batches         host-local train/dev batch iterators (synthetic or the SeqIO pipeline)
  loop                  train_and_evaluate(config, workdir, eval_fn=None)
  convert               convert_reproduction(...): the reproduction's checkpoint -> a workdir
The mesh, rules, abstract params and the workdir's files are rahf_jax.sharding's, shared with
inference.
"""
