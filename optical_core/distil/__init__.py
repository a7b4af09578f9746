"""Distillation: optimal transport, the objectives, the training loop, saving a run."""
