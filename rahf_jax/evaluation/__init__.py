"""The paper's evaluation metrics as pure numpy functions, and the result tables.

Modules: score_metrics (PLCC, SRCC), heatmap_metrics (MSE, CC, KLD, SIM, NSS,
AUC-Judd), word_metrics (misaligned-word precision, recall, F1), tables (all at once
and the markdown tables), seqio_metrics (seqio-style metric functions). No
TensorFlow or JAX here: these run wherever numpy, scipy and Pillow do.
"""

from rahf_jax.evaluation.tables import compute_all_metrics, metrics_to_markdown

__all__ = ["compute_all_metrics", "metrics_to_markdown"]
