"""Files between the browser and the server: URLs of workspace files, and the files a client says it uploaded."""

from pathlib import Path
from urllib.parse import quote


def file_url(path: str | Path) -> str:
    """Gradio serves files below its `allowed_paths` at /gradio_api/file=<absolute path>."""
    return f"/gradio_api/file={quote(str(Path(path).resolve()))}"


def received_uploads(files: list[str]) -> list[Path]:
    """The paths of an upload event. A client can send any server path in a FileData payload (PITFALLS "Gradio,
    mounted"); Gradio refuses those that are not in its upload cache once `create_server` marks the mounted
    Blocks as launched, so by here every path is a file Gradio received."""
    return [Path(f) for f in files]
