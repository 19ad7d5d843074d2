"""URLs under which the studio's server lets the browser fetch workspace files."""

from pathlib import Path
from urllib.parse import quote


def file_url(path: str | Path) -> str:
    """Gradio serves files below its `allowed_paths` at /gradio_api/file=<absolute path>."""
    return f"/gradio_api/file={quote(str(Path(path).resolve()))}"
