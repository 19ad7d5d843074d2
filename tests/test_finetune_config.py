"""The fine-tune config and its checks: torch-free, every field bounded, hostile files refused by name."""

import subprocess
import sys
from pathlib import Path

import pytest

from backend.core import config
from backend.core.errors import ConfigError
from backend.core.paths import REPO
from backend.finetune.config import FinetuneConfig, check_config
from tests.train_helpers import write_dataset, write_model

HUGE = "1" + "0" * 400  # a 401-digit integer


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ft-config")
    return {"model": write_model(root / "model"), "data": write_dataset(root / "data", [20, 30])}


def good(assets: dict[str, Path], **values: object) -> FinetuneConfig:
    return config.from_dict(
        FinetuneConfig,
        {
            "base_model": str(assets["model"]),
            "train_data": str(assets["data"]),
            "device": "cpu",
            "max_frames": 16,
            "min_frames": 4,
        }
        | values,
    )


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lr": float("inf")}, "lr must be a finite number, got inf"),
        ({"lr": "1e400"}, "lr must be a finite number"),
        ({"lr": float("nan")}, "lr must be a finite number, got nan"),
        ({"lr": -1e-4}, "lr must be > 0"),
        ({"lr": 5.0}, "lr must be <= 1"),
        ({"depformer_lr": float("-inf")}, "depformer_lr must be a finite number"),
        ({"max_steps": 1e30}, "max_steps must be <= 1000000000"),
        ({"max_steps": int(HUGE)}, r"max_steps must be <= 1000000000, got 1000.*\(401 characters\)"),
        ({"lora_scaling": -int(HUGE)}, "lora_scaling: .* is not a valid float"),
        ({"warmup_steps": -3}, "warmup_steps must be >= 0"),
        ({"batch_size": 10**9}, "batch_size must be <= 65536"),
        ({"beta2": 1.0}, "beta2 must be < 1"),
        ({"eps": 0.0}, "eps must be > 0"),
        ({"semantic_weight": float("inf")}, "semantic_weight must be a finite number"),
        ({"main_port": 70000}, "main_port must be <= 65535"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 2**64}, "seed is out of range: 18446744073709551616"),
    ],
)
def test_non_finite_and_absurd_numbers_are_refused_naming_the_field(
    assets: dict[str, Path], values: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_config(good(assets, **values))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"device": "cuda", "gpu_ids": "0,x"}, "gpu_ids: '0,x'"),
        ({"device": "cuda", "num_processes": 2, "gpu_ids": "3"}, "lists 1 GPU"),
        ({"num_processes": 3, "num_machines": 2}, "must be a multiple of num_machines"),
        ({"train_data": "/nowhere/data"}, "train_data: /nowhere/data not found"),
    ],
)
def test_launch_rules_are_checked_without_a_workspace(assets: dict[str, Path], values: dict, message: str) -> None:
    """check_config holds every rule (the studio's form calls it alone), not only the launcher."""
    with pytest.raises(ConfigError, match=message):
        check_config(good(assets, **values))


def test_a_float_too_large_for_a_float_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^lr: 1000.*\(401 characters\) is not a valid float"):
        config.from_dict(FinetuneConfig, {"lr": int(HUGE)})
    with pytest.raises(ConfigError, match="max_steps: inf is not a valid int"):
        config.from_dict(FinetuneConfig, {"max_steps": float("inf")})


def test_the_good_config_passes(assets: dict[str, Path]) -> None:
    check_config(good(assets))


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"lr": ' + HUGE + "}", r"lr: 1000.*is not a valid float"),
        ('{"max_steps": ' + HUGE + "}", None),  # an int: parsed, then refused by check_config
        ('{"lr": 1e400}', None),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"lr": ' + "1" * 5000 + "}", "cannot read the configuration"),  # beyond Python's int digit limit
        ('{"no_such_field": 1}', "unknown setting"),
    ],
)
def test_hostile_config_files_are_refused_naming_the_file(tmp_path: Path, text: str, problem: str | None) -> None:
    file = tmp_path / "ft.json"
    file.write_text(text)
    if problem is None:
        cfg = config.load(FinetuneConfig, file)
        with pytest.raises(ConfigError, match="must be a finite number|must be <= "):
            config.check_numbers(cfg)
        return
    with pytest.raises(ConfigError, match=f"^{file}: .*{problem}"):
        config.load(FinetuneConfig, file)


def test_cli_refuses_a_hostile_config_file_without_a_traceback(tmp_path: Path) -> None:
    for name, text in (("deep.json", "[" * 100_000), ("huge.json", '{"lr": ' + HUGE + "}")):
        file = tmp_path / name
        file.write_text(text)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "backend.finetune.runs",
                "start",
                "--workspace",
                str(tmp_path),
                "--config",
                str(file),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith(f"error: {file}: ") and "Traceback" not in out.stderr
        assert not (tmp_path / "runs").exists()


def test_check_config_loads_neither_torch_nor_moshi(assets: dict[str, Path], tmp_path: Path) -> None:
    """The studio's form validates on every change through check_config: it must stay light."""
    cfg_file = tmp_path / "cfg.json"
    config.save(good(assets), cfg_file)
    code = (
        "import sys; from backend.core import config; "
        "from backend.finetune.config import FinetuneConfig, check_config; "
        f"check_config(config.load(FinetuneConfig, {str(cfg_file)!r})); "
        "print(sorted(m for m in ('torch', 'moshi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
