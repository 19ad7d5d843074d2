"""Demo workspace creation, its saved models and its settings."""

import json
from pathlib import Path

import pytest
import torch
from moshi.utils.compile import no_compile

from backend.core import config
from backend.core.errors import ConfigError, InputError
from backend.core.spec import CARD, EPAD_ID, FRAME_SIZE, PAD_ID
from backend.core.workspace import WorkspaceSettings, open_workspace
from backend.demo.workspace import create_demo_workspace, demo_lm, main
from backend.models.source import DEMO_MIMI_ASSET, random_mimi, tiny_mimi_config
from backend.models.text_tokenizer import load_spm
from backend.models.weights import load_lm, load_mimi


@pytest.fixture
def demo_ws(demo_workspace):
    """The session's demo workspace (conftest), which these tests only read."""
    return demo_workspace


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_demo_workspace_has_everything(demo_ws):
    for folder in demo_ws.folders():
        assert folder.is_dir()
    raw = sorted(p.name for p in demo_ws.raw.iterdir())
    assert len(raw) == 6 and sum(n.endswith(".flac") for n in raw) == 3
    assert demo_ws.settings.demo and demo_ws.settings_file.is_file()
    assert demo_ws.mimi_source == str(demo_ws.demo_mimi) and demo_ws.lm_source == str(demo_ws.demo_lm)
    sp = load_spm(demo_ws.tokenizer_path)
    assert sp.id_to_piece(PAD_ID) == "<pad>" and sp.id_to_piece(EPAD_ID) == "<unk>"
    # Trained on the demo words, with byte fallback for anything else.
    assert sp.decode(sp.encode("Could I have a large latte, please?")) == "Could I have a large latte, please?"
    assert sp.decode(sp.encode("zebra ü")) == "zebra ü" and EPAD_ID not in sp.encode("zebra ü")


def test_second_creation_reuses_everything(demo_ws):
    before = snapshot(demo_ws.root)
    again = create_demo_workspace(demo_ws.root)
    assert again == demo_ws
    assert snapshot(demo_ws.root) == before  # nothing rewritten


def test_creation_completes_an_interrupted_one(tmp_path):
    ws = create_demo_workspace(tmp_path)
    (ws.demo_mimi / "mimi_config.json").unlink()
    (ws.raw / "demo_cafe.json").unlink()
    create_demo_workspace(tmp_path)
    assert (ws.demo_mimi / "mimi_config.json").is_file() and (ws.raw / "demo_cafe.json").is_file()


def test_saved_mimi_loads_back_identical(demo_ws):
    wav = torch.randn(1, 1, 3 * FRAME_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        codes = load_mimi(demo_ws.mimi_source).encode(wav)
        reference = load_mimi(DEMO_MIMI_ASSET).encode(wav)  # the trained demo codec shipped in assets/
    assert codes.shape == (1, 8, 3)
    assert torch.equal(codes, reference)
    assert len(codes.unique()) > 1  # trained codebooks, not all zeros


def test_random_codec_workspace_for_speed(tmp_path):
    ws = create_demo_workspace(tmp_path / "ws", random_codec=True)
    wav = torch.randn(1, 1, 3 * FRAME_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        codes = load_mimi(ws.mimi_source).encode(wav)
        reference = random_mimi(tiny_mimi_config(), seed=0).encode(wav)
    assert torch.equal(codes, reference)


def test_saved_lm_loads_back_identical(demo_ws):
    lm = load_lm(demo_ws.lm_source)
    gen = torch.Generator().manual_seed(2)
    codes = torch.cat(
        [torch.randint(0, 400, (1, 1, 6), generator=gen), torch.randint(0, CARD, (1, 16, 6), generator=gen)], dim=1
    )
    with torch.no_grad(), no_compile():  # torch.compile would cost ~30 s on 2 cores
        out, ref = lm(codes), demo_lm()(codes)
    assert out.logits.shape[:2] == (1, 8)
    assert torch.equal(out.mask, ref.mask) and out.mask.any()
    # Positions the delays leave undefined are NaN in both: compare with equal_nan.
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(out.text_logits, ref.text_logits, rtol=0, atol=0, equal_nan=True)


def test_settings_round_trip(demo_ws, tmp_path):
    ws = create_demo_workspace(tmp_path)
    chosen = WorkspaceSettings(lm="kyutai/moshiko-pytorch-bf16", demo=False, device="cpu")
    ws.with_settings(chosen)
    reopened = open_workspace(tmp_path)
    assert reopened.settings == chosen
    assert reopened.lm_source == "kyutai/moshiko-pytorch-bf16"  # not a local path: a hub repo id
    assert reopened.mimi_source == str(tmp_path.resolve() / "models/demo-mimi")
    # Re-creating the demo keeps the user's choices.
    assert create_demo_workspace(tmp_path).settings == chosen


def test_bad_or_missing_settings_are_named(tmp_path):
    with pytest.raises(InputError, match="settings.json: not a workspace"):
        open_workspace(tmp_path)
    (tmp_path / "settings.json").write_text(json.dumps({**config.to_dict(WorkspaceSettings()), "device": "tpu"}))
    with pytest.raises(ConfigError, match="device"):
        open_workspace(tmp_path)


def test_cli_show(demo_ws, capsys):
    assert main(["show", str(demo_ws.root)]) == 0
    out = capsys.readouterr().out
    assert "demo: True" in out and "raw/: 6 entries" in out


def test_model_folders_lists_models_exports_and_complete_checkpoints(tmp_path: Path) -> None:
    from backend.core.workspace import Workspace
    from backend.models import checkpoints
    from backend.models.checkpoints import model_folders
    from backend.models.source import LM_KWARGS

    ws = Workspace(tmp_path, WorkspaceSettings())
    for folder in (
        "models/a",
        "runs/r1/exports/step-000002",
        "runs/r1/checkpoints/step-000002",
        "runs/r1/checkpoints/step-000004",
        "runs/r2/checkpoints/step-000001",
    ):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / LM_KWARGS).write_text("{}")
    for step in ("r1/checkpoints/step-000002", "r2/checkpoints/step-000001"):
        (tmp_path / "runs" / step / checkpoints.COMPLETE).write_text("ok\n")
    # step-000004 has no `complete` marker: a save that was cut short is not offered
    assert model_folders(ws) == [
        "models/a",
        "runs/r2/checkpoints/step-000001",
        "runs/r1/exports/step-000002",
        "runs/r1/checkpoints/step-000002",
    ]
