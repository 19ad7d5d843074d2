"""The studio's one rule for paths a client types: inside the workspace, or refused before anything is written.

A browser is hostile (issue 11): `../../x`, `/tmp/x` or a symlink in the workspace that leads out must not
let it read or write elsewhere. The CLIs do not use this: a shell user owns their paths.
"""

from pathlib import Path

from backend.core.errors import ConfigError


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
    path = (base / raw).resolve()  # an absolute `raw` replaces `base`
    if path == base or not path.is_relative_to(base):
        raise ConfigError(f"{what}: {raw} is not inside the workspace ({base}); give a path inside it, "
                          f"for example a folder name relative to it")
    return path
