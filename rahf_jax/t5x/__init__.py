"""t5x adapter of RAHF (needs t5x: `pip install -e .[t5x]`).

  rahf_jax.t5x.models     RAHFModel, a t5x BaseModel over rahf_jax's network, losses, decoder
  rahf_jax.t5x.tasks      rahf_task(...): registers the RichHF-18K SeqIO task of a model size with
                          the paper's metrics attached, for t5x.train / t5x.eval / t5x.infer
  rahf_jax.t5x.optimizer  our AdamW schedule (rahf_jax.train.optimizer) as a t5x optimizer

Importing this package imports nothing; the submodules import t5x (models, optimizer) or
SeqIO (tasks) themselves.
"""
