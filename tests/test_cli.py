"""`moshi-studio <stage>` (backend/cli.py): the stage table, --help, and a real stage run through it."""

import importlib
import subprocess
import sys
from pathlib import Path

from backend.cli import STAGES
from backend.core.paths import REPO


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_stage_with_its_summary() -> None:
    out = cli("--help")
    assert out.returncode == 0, out.stderr
    for name, stage in STAGES.items():
        assert f"  {name}" in out.stdout and stage.summary in out.stdout


def test_every_stage_is_a_module_with_main() -> None:
    for stage in STAGES.values():
        assert callable(importlib.import_module(stage.module).main), stage.module


def test_a_missing_or_unknown_stage_is_refused() -> None:
    for args in ((), ("no-such-stage",)):
        out = cli(*args)
        assert out.returncode == 2 and "usage: moshi-studio" in out.stderr


def test_a_stage_runs_through_the_command(tmp_path: Path) -> None:
    (tmp_path / "lonely.json").write_text("[]")
    out = cli("validate", "--input", str(tmp_path))
    assert out.returncode == 1, out.stderr
    assert f"{tmp_path / 'lonely.json'}: transcript without audio" in out.stdout
    out = cli("validate", "--help")
    assert out.returncode == 0 and out.stdout.startswith("usage: moshi-studio validate")
    out = cli("validate", "--input", str(tmp_path / "missing"))
    assert out.returncode == 2 and "no such folder" in out.stderr and "Traceback" not in out.stderr
