"""Other projects' own code at test time (issue 26): a subtree of a local git mirror of NVIDIA/personaplex,
kyutai-labs/moshi or nu-dialogue/moshi-finetune is extracted into a temporary folder and run in a subprocess of
this venv, so facts are checked against the code that makes them; nothing of it is copied into the repository.
Tests using it are skipped where the mirror is absent (set UPSTREAM_MIRRORS to the folder holding
`<owner>+<name>/repo`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

MIRRORS = Path(os.environ.get("UPSTREAM_MIRRORS", "/work/.mirror"))


def upstream_tree(repo: str, subdir: str, dest: Path) -> Path:
    """`subdir` of the mirror of `repo` ("owner/name") at its HEAD, extracted under `dest`; skips without it."""
    git_dir = MIRRORS / repo.replace("/", "+") / "repo"
    if not git_dir.is_dir():
        pytest.skip(f"no local mirror of {repo} under {MIRRORS}")
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "--git-dir", str(git_dir), "archive", "HEAD", subdir], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / subdir


def run_upstream(
    code: str, path: Path, *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run `code` with this venv's Python and `path` first on sys.path (so `import moshi` is the other project's
    copy when `path` holds one); fails the test with its output when it fails."""
    env = dict(os.environ, PYTHONPATH=str(path), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"upstream code failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done
