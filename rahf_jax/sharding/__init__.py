"""What training and inference share: where arrays live and how a workdir's params are read.

Modules (neither rahf_jax.train nor rahf_jax.inference owns them; both import them):
  partitioning     make_mesh, LOGICAL_AXIS_RULES (dp, fsdp, fsdp_tp), logical_shardings
  abstract_params  abstract_params(...), model_and_abstract_params(config): the params' shapes
                   with shardings, the target of init and of every restore
  mesh_context     batch_sharding, shard_batch, with_mesh_context (steps run under mesh + rules)
  workdir_files    config.json and checkpoint folders: save/restore params, checkpoint_steps
"""
