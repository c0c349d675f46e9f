"""t5x adapter of RAHF (needs t5x; install: README.md, section t5x).

  rahf_jax.t5x.run_settings  the gin files' settings read from the native config
                             (configs/rahf.py): model, loss weights, optimizer, schedule, the t5x
                             macros' defaults, the adapter's loss, pretrained starts (no t5x)
                             and the constrained decoder's mark bias (MARK_BIAS, MARK_BIAS_RECORD)
  rahf_jax.t5x.models        RAHFModel, a t5x BaseModel over rahf_jax's network, losses and
                             decoders (the native constrained decoding by default, or free)
  rahf_jax.t5x.tasks         registers the RichHF-18K SeqIO task of every model size and variant
                             with the paper's metrics attached (MIXTURE_OR_TASK_MODULE) and the
                             copy plan of constrained decoding as task features
  rahf_jax.t5x.optimizer     the native AdamW chain and schedule as a t5x optimizer
  rahf_jax.t5x.infer_output  t5x.infer's write_fn/merge_fn (runs/infer.gin): one compact JSON
                             line per image, heatmaps as .npy/.png files beside it (no t5x)

Importing this package imports nothing; the submodules import t5x (models, optimizer) or
SeqIO (tasks) themselves.
"""
