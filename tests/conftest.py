"""Shared fixtures: the SpokenWOZ sample (skipped when absent), tiny models, a demo workspace."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPOKENWOZ = REPO.parent / "shared" / "data" / "spokenwoz_sample"

# Two cores: keep torch from oversubscribing when pytest and a studio subprocess both run.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# moshi compiles its LM lazily on first use (~30 s on this CPU); it reads this at import time.
os.environ.setdefault("NO_TORCH_COMPILE", "1")


@pytest.fixture(scope="session")
def spokenwoz() -> Path:
    if not (SPOKENWOZ / "audio").is_dir():
        pytest.skip(f"SpokenWOZ sample not found at {SPOKENWOZ} (it lives in ../shared/data, outside the repo)")
    return SPOKENWOZ


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory):
    """A fresh demo workspace, built once per test session through the launcher's own code path."""
    from backend.workspace import create_demo_workspace

    return create_demo_workspace(tmp_path_factory.mktemp("ws") / "workspace")
