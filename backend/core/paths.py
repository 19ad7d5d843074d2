"""Where the project's own files live (the repository checkout the backend runs from)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "assets"
