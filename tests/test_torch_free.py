"""What must import without torch and moshi: the workspace layout, the data stage, the fine-tune launcher and its
config, the command line (the studio opens, previews commands and validates forms without them)."""

import pkgutil
import subprocess
import sys

import backend.core
import backend.data
import backend.web
from backend.core.paths import REPO

HEAVY = ("torch", "moshi")
LIGHT = sorted({m.name for pkg in (backend.core, backend.data, backend.web)
                for m in pkgutil.iter_modules(pkg.__path__, f"{pkg.__name__}.")}
               | {"backend.finetune.config", "backend.finetune.command", "backend.finetune.runs",
                  "backend.finetune.budget", "backend.finetune.checkpoints", "backend.finetune.run_folder",
                  "backend.models.source", "backend.models.init_config", "backend.dataset.read", "backend.dataset.selection",
                  "backend.dataset.preprocess",
                  "backend.inference.chat_config", "backend.inference.generate_config",
                  "backend.inference.continuation_files", "backend.inference.chat_server", "backend.cli"})


def heavy_modules_after_importing(modules: list[str]) -> list[str]:
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_backend_modules_import_without_torch() -> None:
    assert "backend.core.workspace" in LIGHT and "backend.data.validate" in LIGHT
    assert heavy_modules_after_importing(LIGHT) == []


def test_studio_app_imports_without_torch() -> None:
    assert heavy_modules_after_importing(["studio.app"]) == []
