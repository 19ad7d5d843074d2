"""Files a browser uploads. Gradio keeps each in its upload cache (a folder per content hash); the
studio copies what it accepts into the workspace, so the cached copy is removed as soon as the
handler has read it, whether the file was accepted or not."""

from pathlib import Path

from gradio.utils import get_upload_folder


def remove_uploads(paths: list[str] | str | None) -> None:
    """Delete uploaded files (and their emptied hash folders); paths outside the upload cache are left alone."""
    cache = Path(get_upload_folder()).resolve()
    for p in [paths] if isinstance(paths, str) else paths or []:
        path = Path(p).resolve()
        if path == cache or not path.is_relative_to(cache):
            continue
        path.unlink(missing_ok=True)
        if path.parent != cache:
            try:
                path.parent.rmdir()
            except OSError:  # another file still lives there
                pass
