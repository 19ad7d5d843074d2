"""A transcript as it was before the studio first changed it: `<name>.original.json`, written once, never touched
again (curation's saves and the channel swap, and annotate's re-alignment in place)."""

import shutil
from pathlib import Path

from backend.core.atomic import atomic_path
from backend.data.files import SIDECAR_SUFFIXES


def original_path(transcript: Path) -> Path:
    return transcript.with_name(transcript.stem + SIDECAR_SUFFIXES["original"])


def keep_original(transcript: Path) -> Path:
    """Copy the transcript to `<name>.original.json` unless an original is already kept."""
    target = original_path(transcript)
    if not target.exists():
        with atomic_path(target) as tmp:
            shutil.copyfile(transcript, tmp)
    return target
