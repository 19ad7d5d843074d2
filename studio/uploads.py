"""Files a browser uploads. Gradio keeps each in its upload cache (a folder per content hash); the
studio copies what it accepts into the workspace, so the cached copy is removed as soon as the
handler has read it, whether the file was accepted or not. An upload no event ever uses (a script posting
to the upload route alone) is deleted once it is `keep_minutes` old, and one request carries at most one
file of the size limit and a transcript."""

from pathlib import Path

from gradio.utils import get_upload_folder
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.data.transcripts import MAX_TRANSCRIPT_BYTES

UPLOAD_ROUTE = "/gradio_api/upload"


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


def named(message: str, paths: list[str] | str | None) -> str:
    """A message with each uploaded file's server path (in the upload cache) replaced by its name."""
    for p in [paths] if isinstance(paths, str) else paths or []:
        message = message.replace(str(p), Path(p).name)
    return message


def cache_expiry(keep_minutes: float) -> tuple[int, int]:
    """Gradio's `delete_cache` (every `frequency` s, delete its files older than `age` s) for uploads kept at most
    `keep_minutes`."""
    age = max(1, round(keep_minutes * 60))
    return min(age, 600), age


class UploadBound:
    """ASGI middleware: refuse, before its body is read, an upload request larger than one file of the limit and a
    transcript (Gradio's own limit is per file, and one request may carry a thousand files)."""

    def __init__(self, app: ASGIApp, max_file_bytes: int):
        self.app, self.max_bytes = app, max_file_bytes + MAX_TRANSCRIPT_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith(UPLOAD_ROUTE):
            length = dict(scope["headers"]).get(b"content-length", b"")
            if not length.isdigit() or int(length) > self.max_bytes:
                await PlainTextResponse(
                    f"an upload request may carry at most {self.max_bytes / 2**20:.0f} MB (one file of the size "
                    "limit and a transcript), with its length given: upload the files in several requests",
                    status_code=413,
                )(scope, receive, send)
                return
        await self.app(scope, receive, send)
