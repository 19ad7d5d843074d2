"""Moshi Studio backend: one module per stage, usable as a library and as `python -m backend.<stage>`."""
