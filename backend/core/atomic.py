"""Write files under a temporary name, then rename: readers never see a half-written file."""

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from backend.core.errors import ConfigError, DiskFull


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it is renamed to `target`.

    On any exception the temporary file is removed and `target` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes files private; outputs are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as e:
        tmp_path.unlink(missing_ok=True)
        _raise_disk_full(e, target)
        raise


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory next to `target`; on success it becomes `target`.

    An existing `target` is swapped out and removed only after the new directory is in place; on any
    exception the temporary directory is removed and `target` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes directories private; outputs are ordinary folders
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_disk_full(e, target)
        raise


def _raise_disk_full(e: BaseException, target: Path) -> None:
    """A full disk (or quota) as a message naming what could not be written, not a bare OSError."""
    if isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e)):  # pyarrow
        raise DiskFull(
            f"{target}: not written, the disk is full ({e.strerror}); free some space and try "
            "again (the old version, if any, is untouched)"
        ) from None


def check_output_folder(folder: str | Path, what: str) -> None:
    """Refuse, before anything is written, an output folder that is a file or lies inside one."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{folder}: cannot be the {what}: {p} is a file, not a folder")
            return
