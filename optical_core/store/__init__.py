"""Persistence: checkpoints, atomic writes, provenance and where things live on disk."""
