"""Issue 21's "newcomer's second sitting" frictions that show in a handler's output (no browser): each failed
before its fix. The ones only a browser shows are in tests/test_studio_browser.py."""

import dataclasses
import math
import shutil
import socket
import time
from pathlib import Path

import pytest
import soundfile
from handler_helpers import make_workspace

from backend.core import config
from backend.core.workspace import Workspace, WorkspaceSettings
from backend.dataset.build import DatasetReport
from backend.dataset.pipeline import RECORDINGS_WHY, PrepareResult
from backend.dataset.text_layout import DialogueAudit, SpeakerAudit
from backend.finetune.presets import PRESETS
from studio import chat_tab, continuations_tab, curate, data_tab, finetune_tab, preprocess_tab, settings_tab

MOSHIKO = "kyutai/moshiko-pytorch-bf16"

CURATOR = curate.Curator()  # the editors one studio keeps open (tests use their own workspaces)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path)


def real_weights(ws: Workspace) -> Workspace:
    """The workspace once Settings point at moshiko (no download happens in these tests)."""
    return ws.with_settings(dataclasses.replace(ws.settings, lm=MOSHIKO, mimi=MOSHIKO, demo=False))


# ---------------------------------------------------------------- 2. the demo pays off with the page's defaults


def test_the_demo_continues_greedily_by_default_real_weights_sample(ws: Workspace) -> None:
    demo = dict(zip(continuations_tab.KNOBS, continuations_tab.knob_values(ws)))
    assert demo["text_temperature"] == 0 and demo["audio_temperature"] == 0  # the memorised demo replays
    real = dict(zip(continuations_tab.KNOBS, continuations_tab.knob_values(real_weights(ws))))
    assert real["text_temperature"] == 0.7 and real["audio_temperature"] == 0.8  # Moshi's own sampling


# ---------------------------------------------------------------- 4. silent waits


def test_annotate_progress_moves_within_a_recording(ws: Workspace) -> None:
    audio, sr = soundfile.read(str(ws.raw / "demo_cafe.flac"))
    soundfile.write(str(ws.raw / "call.wav"), audio[: 4 * sr], sr)
    seen: list[tuple[float, str]] = []
    message, _ = CURATOR.on_annotate(ws, "call", "pocketsphinx", "", lambda f, m: seen.append((f, m)))
    assert "annotated call" in message
    inside = [m for f, m in seen if 0 < f < 1]
    assert inside and any("speaker A" in m for m in inside) and any("speaker B" in m for m in inside), seen


def test_initialise_from_a_hub_id_offline_fails_at_once(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    import backend.models.initialise  # noqa: F401  # torch's import is not the wait this is about

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    values = finetune_tab.init_values(ws)
    values[finetune_tab.INIT_FIELDS.index("source")] = "nobody/not-in-the-cache"
    started = time.monotonic()
    message = finetune_tab.on_init(ws, *values)
    assert time.monotonic() - started < 5
    assert message.startswith("✘") and "HF_HUB_OFFLINE" in message and "not in the local" in message, message


def test_initialise_from_a_hub_id_unreachable_fails_at_once(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    def unreachable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    values = finetune_tab.init_values(ws)
    values[finetune_tab.INIT_FIELDS.index("source")] = "nobody/not-in-the-cache"
    message = finetune_tab.on_init(ws, *values)
    assert message.startswith("✘") and "cannot reach" in message and "name resolution" in message, message


# ---------------------------------------------------------------- 5. the live loss plot


def test_loss_curves_on_a_log_axis() -> None:
    metrics = [{"step": 5, "loss": 10.0}, {"step": 60, "loss": 0.01}]
    shown = finetune_tab.curves(metrics)
    assert list(shown[finetune_tab.LOSS_AXIS]) == pytest.approx([1.0, -2.0])  # 0.01 is not drawn on zero


# ---------------------------------------------------------------- 7. the Curate edit bar and its status


def test_curate_bar_labels_and_status_after_save(ws: Workspace) -> None:
    message, preview = CURATOR.on_curate_pick(ws, "demo_cafe")
    for label in ("text", "start (s)", "end (s)", "split at (s)"):
        assert f">{label}<" in preview, label  # visible labels, not only aria-labels
    assert "in the dataset" not in message  # no dataset exists yet
    CURATOR.on_edit(ws, "demo_cafe", '{"op": "text", "i": 0, "text": "hi"}')
    assert "unsaved edits" in CURATOR.on_curate_pick(ws, "demo_cafe")[0]
    saved, _ = CURATOR.on_save(ws, "demo_cafe")
    assert "unsaved" not in saved and "edits since opening" not in saved, saved


# ---------------------------------------------------------------- 8. the floor-transfer histogram


def test_histogram_bars_are_as_wide_as_their_bins() -> None:
    from studio import plots

    stats = {
        "metrics": {
            "floor_transfer_offset": {
                "edges": [-1.0, -0.5, 0.0, 0.5, 1.0],
                "by_source": {"reference": {"counts": [1, 2, 3, 4]}, "model": {"counts": [0, 1, 0, 1]}},
            }
        }
    }
    plot = plots.histogram(continuations_tab.offsets_plot(stats), "offset (s)")
    assert plot.x_bin == pytest.approx(0.5)


# ---------------------------------------------------------------- 9. the Build audit


def test_build_audit_counts_what_it_leaves_out_in_plain_words() -> None:
    speaker = SpeakerAudit(
        "A", "spread", 100, 10, pieces=20, placed=20, max_drift=3, bare_boundary_share=0.11, pad_share=0.5
    )
    audits = [DialogueAudit("demo_cafe", "raw/demo_cafe.json", "words", {"layout": "spread"}, 8.0, {"A": speaker})]
    report = DatasetReport(rows=1, frames=100, files=["train-001-of-001.parquet"])
    left = {"noisy_call": "excluded", "chat-20260101-120000": RECORDINGS_WHY}  # skipped: never tokenized
    text = PrepareResult(None, audits, report, left_out=left).markdown()
    assert "demo_cafe" in text and "chat-20260101-120000" not in text and "noisy_call" not in text
    assert "1 chat recording" in text and "1 excluded" in text, text
    assert "bare ▁" not in text and "drift <=" not in text and " fr" not in text, text


# ---------------------------------------------------------------- 10. messages


def test_a_lone_transcript_upload_names_no_server_path(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = tmp_path / "gradio" / "0123abcd"
    upload.mkdir(parents=True)
    shutil.copy(ws.raw / "demo_cafe.json", upload / "lonely.json")
    monkeypatch.setattr(data_tab, "received_uploads", lambda files: [Path(f) for f in files])
    message, _, _ = data_tab.on_upload(ws, [str(upload / "lonely.json")])
    assert "lonely.json" in message and str(tmp_path) not in message and "upload" in message, message


def test_chat_tells_a_studio_user_about_the_clean_box(ws: Workspace) -> None:
    from train_helpers import write_model

    from backend.dataset.spm import train_spm
    from backend.inference.chat_server import ChatService, workspace_chat_config

    write_model(ws.models / "tiny16", dep_q=16)
    train_spm(["hello there hi", "the cat sat on the mat"] * 5, ws.tokenizer_path, 300)  # chat checks it first
    service = ChatService(workspace_chat_config(ws))
    knobs = [config.to_dict(service.cfg)[k] for k in chat_tab.KNOBS]
    message = chat_tab.on_load(ws, service, "models/tiny16", False, *knobs)
    assert "clean for serving" in message, message


def test_settings_tokenizer_help_and_hub_id(ws: Workspace) -> None:
    help_text = {r["name"]: r["help"] for r in config.describe(WorkspaceSettings)}["tokenizer"]
    assert "absolute" not in help_text
    values = [config.to_dict(ws.settings)[n] for n in settings_tab.FIELDS]
    values[settings_tab.FIELDS.index("tokenizer")] = MOSHIKO
    kept, message = settings_tab.on_save(ws, *values)
    assert message.startswith("✘") and "tokenizer_spm_32k_3.model" in message, message
    assert kept.settings.tokenizer == ws.settings.tokenizer


def test_preprocess_on_cpu_explains_multi_gpu(ws: Workspace) -> None:
    values = preprocess_tab.form_defaults(ws)
    values[preprocess_tab.FORM.index(("", "num_processes"))] = 2
    values[preprocess_tab.FORM.index(("", "device"))] = "cpu"
    command, problem = preprocess_tab.on_form(ws, "tokenize_audio", *values)
    assert not problem and "--multi_gpu" in command
    notes = [line for line in command.splitlines() if line.startswith("#")]
    assert any("CPU" in n and "--multi_gpu" in n for n in notes), command


# ---------------------------------------------------------------- 11. the real 7B path


def test_initialise_defaults_follow_the_workspace_lm(ws: Workspace) -> None:
    demo = dict(zip(finetune_tab.INIT_FIELDS, finetune_tab.init_values(ws)))
    assert (demo["source"], demo["output"]) == ("models/demo-lm", "models/demo-lm-init")
    real = dict(zip(finetune_tab.INIT_FIELDS, finetune_tab.init_values(real_weights(ws))))
    seven_b = {p["base_model"] for name, p in PRESETS.items() if "7B" in name}
    assert real["source"] == MOSHIKO and {real["output"]} == seven_b


def test_log_axis_helper_is_finite_for_zero_loss() -> None:
    shown = finetune_tab.curves([{"step": 1, "loss": 0.0}])
    assert all(math.isfinite(v) for v in shown[finetune_tab.LOSS_AXIS])
