"""Where the project's own files live (the repository checkout the backend runs from)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "assets"
PROBE_SETS = ASSETS / "probes"  # the project's behaviour probe sets, one folder each (made by backend.demo.probes)


def probe_folder(ws_root: Path, source: str) -> Path:
    """A probe set's folder: a shipped set by name, else a path (relative to the workspace)."""
    shipped = PROBE_SETS / source
    if re.fullmatch(r"[A-Za-z0-9_.-]+", source) and shipped.is_dir():
        return shipped
    path = Path(source).expanduser()
    return path if path.is_absolute() else Path(ws_root) / path
