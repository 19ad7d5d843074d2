"""Annotation: raw stereo recordings become word-timed transcripts (run.py), and curation edits them
(edit.py). `python -m backend.data.annotate --help` lists the settings."""
