"""Moshi Studio's Gradio front end: one module per tab; every action calls a backend function."""
