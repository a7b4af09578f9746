"""Corpora on disk, training bitext and the CLIR test collections."""
