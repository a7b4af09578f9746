"""Retrieval, metrics, scoring against baselines, significance and checkpoint comparison."""
