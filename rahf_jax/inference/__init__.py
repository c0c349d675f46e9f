"""Inference: load a checkpoint, predict for (image, prompt) batches, draw overlays.

No TensorFlow here: prompts are tokenised with sentencepiece and images resized with PIL, so a
predictor runs on accelerator images that have JAX but no TensorFlow.
"""
