"""Workspaces for the studio's handler tests (no browser): small, nested so that `../../x` stays in tmp_path."""

import os
import shutil
import time
from pathlib import Path
from typing import Callable

from backend.core.workspace import Workspace, WorkspaceSettings
from backend.demo.workspace import copy_demo_dialogues

ESCAPES = ("../../x", "{outside}/x", "models/../../x")  # {outside}: an absolute folder next to the workspace


def make_workspace(tmp_path: Path, assets: Path | None = None) -> Workspace:
    """tmp_path/a/b/ws with the demo dialogues in raw/ and `assets` (dataset/, models/<name>) in place."""
    ws = Workspace((tmp_path / "a" / "b" / "ws").resolve(), WorkspaceSettings())
    for folder in ws.folders():
        folder.mkdir(parents=True, exist_ok=True)
    copy_demo_dialogues(ws.raw)
    if assets is not None:  # hard links: cheap, and not symlinks leading out (the studio refuses those)
        ws.dataset.rmdir()
        shutil.copytree(assets / "dataset", ws.dataset, copy_function=os.link)
        for model in (assets / "models").iterdir():
            shutil.copytree(model, ws.models / model.name, copy_function=os.link)
    return ws.with_settings(ws.settings)


def escapes(tmp_path: Path) -> list[str]:
    """Paths a hostile client types: relative escapes and an absolute path outside the workspace."""
    return [e.format(outside=tmp_path / "outside") for e in ESCAPES]


def outside(tmp_path: Path, ws: Workspace) -> set[Path]:
    """Every file and folder under tmp_path except the workspace and its contents (snapshot before and after)."""
    found = set()
    for folder, dirs, files in os.walk(tmp_path.resolve()):
        dirs[:] = [d for d in dirs if Path(folder, d) != ws.root]
        found.update(Path(folder, n) for n in dirs + files)
    return found


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
