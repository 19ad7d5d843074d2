"""backend.core.confine: the studio's one rule for typed paths."""

from pathlib import Path

import pytest

from backend.core.confine import inside_workspace
from backend.core.errors import ConfigError


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "ws" / "models").mkdir(parents=True)
    return tmp_path / "ws"


@pytest.mark.parametrize(
    "text", ["../x", "../../x", "models/../../x", "/tmp/x", "/", "", "  ", ".", "models/..", "a\0b"]
)
def test_escapes_and_empty_values_are_refused_with_the_field_named(root: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="^output: "):
        inside_workspace(root, text, "output")


@pytest.mark.parametrize("text", ["models/new", "x", "kyutai/moshiko-pytorch-bf16", "a/../b", "./models"])
def test_paths_inside_resolve_below_the_root(root: Path, text: str) -> None:
    assert inside_workspace(root, text, "output") == (root / text).resolve()


def test_an_absolute_path_inside_is_accepted(root: Path) -> None:
    assert inside_workspace(root, str(root / "models" / "m"), "output") == root.resolve() / "models" / "m"


def test_a_symlink_leading_out_is_refused_one_staying_in_is_not(root: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (root / "out").symlink_to(tmp_path / "elsewhere")
    (root / "in").symlink_to(root / "models")
    with pytest.raises(ConfigError, match="not inside the workspace"):
        inside_workspace(root, "out/x", "export folder")
    with pytest.raises(ConfigError, match="not inside the workspace"):
        inside_workspace(root, "out", "export folder")
    assert inside_workspace(root, "in/x", "export folder") == root.resolve() / "models" / "x"


def test_a_workspace_reached_through_a_symlink_still_works(root: Path, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(root)
    assert inside_workspace(tmp_path / "link", "models/m", "output") == root.resolve() / "models" / "m"
