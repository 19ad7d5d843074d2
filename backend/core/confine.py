"""The studio's one rule for paths a client types: inside the workspace, or refused before anything is written.

A browser is hostile (issue 11): `../../x`, `/tmp/x` or a symlink in the workspace that leads out must not
let it read or write elsewhere. The CLIs do not use this: a shell user owns their paths.
"""

from pathlib import Path

from backend.core.errors import ConfigError

NAME_MAX = 255  # bytes of one file or folder name (Linux, macOS, Windows alike)


def inside_workspace(root: Path, text: str | Path, what: str) -> Path:
    """`text` (relative to `root`, or absolute) as a resolved path strictly below `root`.

    Symlinks are followed as far as the path exists, so a link inside the workspace that points out is refused
    too. Raises ConfigError naming `what` for an empty value, the root itself or anything outside it.
    """
    raw = str(text).strip()
    base = Path(root).resolve()
    if not raw:
        raise ConfigError(f"{what}: a path inside the workspace is required")
    if "\0" in raw:
        raise ConfigError(f"{what}: {raw!r} is not a path")
    long = next((part for part in Path(raw).parts if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX), None)
    if long is not None:  # the file system would refuse it with a bare "[Errno 36] File name too long"
        raise ConfigError(
            f"{what}: the name {long[:40]!r}... is {len(long)} characters long; a file or folder name "
            f"may have at most {NAME_MAX} bytes"
        )
    path = (base / raw).resolve()  # an absolute `raw` replaces `base`
    if path == base or not path.is_relative_to(base):
        raise ConfigError(
            f"{what}: {raw} is not inside the workspace ({base}); give a path inside it, "
            f"for example a folder name relative to it"
        )
    return path
