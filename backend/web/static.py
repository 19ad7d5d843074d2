"""A built web client (Kyutai's `client/dist`) served from a folder at the root of a server, as `moshi.server
--static` does: the unmodified client renders only at `/` and loads `/assets/...`. Nothing outside the folder is
served: starlette resolves each path and refuses one that leaves it (`..`, encoded or not, and symlinks out)."""

from pathlib import Path

from starlette.staticfiles import StaticFiles

from backend.core.errors import ConfigError


def client_files(folder: Path) -> StaticFiles:
    if not (folder / "index.html").is_file():
        raise ConfigError(
            f"{folder}: not a built web client (no index.html); build Kyutai's client (`npm run build` "
            "in its client/ folder) and give its dist/ folder"
        )
    return StaticFiles(directory=folder, html=True)
