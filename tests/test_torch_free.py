"""What must import without torch and moshi: every module of backend/ and studio/ but the heavy ones named below
(the studio opens, lists, previews commands and validates forms without them; they load when a model is first
used). A new module is covered without anyone listing it; one that needs torch at import joins HEAVY_MODULES."""

import subprocess
import sys

from test_layers import module_files

from backend.core.paths import REPO

HEAVY = ("torch", "moshi")
# Modules whose job is computing with torch: they import it at the top.
HEAVY_MODULES = {
    "backend.dataset.codec",
    "backend.demo.codec_quality",
    "backend.evaluate.checkpoint_probes",
    "backend.evaluate.continuation_stats",
    "backend.evaluate.dataset_eval",
    "backend.evaluate.rank",
    "backend.evaluate.score",
    "backend.evaluate.speech",
    "backend.evaluate.stream",
    "backend.demo.codec_training",
    "backend.finetune.data",
    "backend.finetune.loss",
    "backend.finetune.optim",
    "backend.finetune.prefix",
    "backend.finetune.trainer",
    "backend.inference.chat_engine",
    "backend.inference.generate",
    "backend.models.export",
    "backend.models.initialise",
    "backend.models.loading",
    "backend.models.surgery",
    "backend.models.tensor_file",
}
LIGHT = sorted(m for m in module_files() if m not in HEAVY_MODULES and not m.endswith(".__main__"))


def heavy_modules_after_importing(modules: list[str]) -> list[str]:
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_every_light_module_imports_without_torch() -> None:
    assert {"backend.core.workspace", "backend.jobs.launcher", "studio.app", "backend.cli"} <= set(LIGHT)
    assert HEAVY_MODULES <= set(module_files()), "a heavy module was renamed or removed: update HEAVY_MODULES"
    assert heavy_modules_after_importing(LIGHT) == []


def test_a_heavy_module_is_seen() -> None:
    assert heavy_modules_after_importing(["backend.models.surgery"]) == ["torch", "moshi"]
