"""Issue 11, item 2: every path typed into the studio resolves inside the workspace or is refused before
anything is written, handler by handler (Settings, Continuations, Chat; Fine-tune in test_handlers_finetune)."""

from pathlib import Path

import pytest
from handler_helpers import escapes, make_workspace, outside

from backend.core import config
from backend.core.errors import ConfigError, InputError
from backend.core.workspace import open_workspace
from backend.inference.chat_server import ChatService, workspace_chat_config
from studio import chat_tab, continuations_tab, settings_tab


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_workspace(tmp_path)


def settings_values(ws, **changes: object) -> list[object]:  # type: ignore[no-untyped-def]
    return list((config.to_dict(ws.settings) | changes).values())


@pytest.mark.parametrize("field", settings_tab.PATHS)
def test_settings_refuse_paths_outside_and_keep_the_file(ws, tmp_path: Path, field: str) -> None:  # type: ignore[no-untyped-def]
    saved = ws.settings_file.read_text()
    before = outside(tmp_path, ws)
    for path in escapes(tmp_path):
        same, message = settings_tab.on_save(ws, *settings_values(ws, **{field: path}))
        assert same is ws and message.startswith(f"✘ {field}: ") and "not inside the workspace" in message
    assert ws.settings_file.read_text() == saved and outside(tmp_path, ws) == before


def test_settings_take_hub_ids_and_paths_inside(ws) -> None:  # type: ignore[no-untyped-def]
    (ws.root / "models" / "tok.model").write_bytes(b"")  # the tokenizer must be a file of the workspace
    new, message = settings_tab.on_save(
        ws, *settings_values(ws, lm="kyutai/moshiko-pytorch-bf16", tokenizer=str(ws.root / "models" / "tok.model"))
    )
    assert message.startswith("Saved") and new.settings.lm == "kyutai/moshiko-pytorch-bf16"
    assert open_workspace(ws.root).settings == new.settings


def generate_values(model: str) -> list[object]:
    knobs = {
        "main_speaker": "A",
        "text_temperature": 0.7,
        "text_top_k": 25,
        "audio_temperature": 0.8,
        "audio_top_k": 250,
        "seed": 0,
    }
    return [model, None, ["train/demo_cafe"], 4.0, 2.0, *(knobs[k] for k in continuations_tab.KNOBS)]


def test_continuations_refuse_models_outside_before_writing(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = outside(tmp_path, ws)
    for path in escapes(tmp_path):
        message, ids, state = continuations_tab.on_generate(ws, None, *generate_values(path))
        assert message.startswith("✘ model: ") and "not inside the workspace" in message and (ids, state) == ([], {})
    assert outside(tmp_path, ws) == before and not any(ws.continuations.glob("*"))


def test_continuation_folders_stay_in_the_workspace(ws) -> None:  # type: ignore[no-untyped-def]
    assert continuations_tab.output_dir(ws, "model") == ws.root / "continuations" / "model"
    for label in ("../../x", "/tmp/x"):
        with pytest.raises(ConfigError, match="not inside the workspace"):
            continuations_tab.output_dir(ws, label)
    with pytest.raises(InputError, match="cannot name a file"):  # an item id sent by the client
        continuations_tab.on_item(ws, "../../../x", "stereo", {"models": {"model": "m"}, "prompt_s": 1.0})


def test_continuations_list_models_and_rows(ws) -> None:  # type: ignore[no-untyped-def]
    (a_models, a), (b_models, b), (ids, picked) = continuations_tab.on_refresh(ws, None, "gone", None)
    assert a_models == b_models == [] and (a, b, ids, picked) == (None, None, [], [])
    empty = continuations_tab.on_item(ws, None, "stereo", {})
    assert empty[:5] == (None, None, None, "", None) and empty[5].empty and empty[6] is None


def test_chat_refuses_models_outside_and_loads_nothing(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    service = ChatService(workspace_chat_config(ws))
    before = outside(tmp_path, ws)
    for path in escapes(tmp_path):
        message = chat_tab.on_load(ws, service, path, True, 0.7, 25, 0.8, 250, 300.0)
        assert message.startswith("**Error:** model: ") and "not inside the workspace" in message
    assert service.engine is None and not service.configured and outside(tmp_path, ws) == before


def test_chat_refuses_a_queue_time_out_of_bounds_and_loads_nothing(ws) -> None:  # type: ignore[no-untyped-def]
    service = ChatService(workspace_chat_config(ws))
    for bad in (-1.0, 1e9, float("nan")):  # what a client may send instead of seconds
        message = chat_tab.on_load(ws, service, None, True, 0.7, 25, 0.8, 250, 300.0, "auto", bad)
        assert message.startswith("**Error:** queue_seconds must be a number from 0 to 3600"), message
    assert service.engine is None and not service.configured


def test_chat_lists_models_and_follows_new_recordings(ws) -> None:  # type: ignore[no-untyped-def]
    service = ChatService(workspace_chat_config(ws))
    models, current = chat_tab.on_refresh(ws, service)
    assert current == "models/demo-lm" and models == []
    assert chat_tab.on_tick(ws, service, "") == (None, None, "")
    recording = ws.raw / "chat-1.wav"
    recording.write_bytes(b"")
    service.last_recording = recording
    path, info, last = chat_tab.on_tick(ws, service, "")
    assert path == last == str(recording) and "raw/chat-1.wav" in info
    assert chat_tab.on_tick(ws, service, last) == (None, None, last)


def test_chat_loads_the_model_again_in_the_dtype_picked(demo_workspace) -> None:  # type: ignore[no-untyped-def]
    """A 7B model on CPU only fits in bfloat16: the tab's dtype reaches the engine, and a change reloads it."""
    import torch

    service = ChatService(workspace_chat_config(demo_workspace))
    for dtype, expected in (("auto", torch.float32), ("bfloat16", torch.bfloat16)):
        message = chat_tab.on_load(demo_workspace, service, None, False, 0.7, 25, 0.8, 250, 300.0, dtype)
        assert message.startswith("Ready"), message
        assert next(service.engine.lm_gen.lm_model.parameters()).dtype == expected
    for bad in ("float64", "../x", None):  # what a client may send instead of a choice
        message = chat_tab.on_load(demo_workspace, service, None, False, 0.7, 25, 0.8, 250, 300.0, bad)
        assert message.startswith("**Error:**") and "dtype" in message, message
    assert next(service.engine.lm_gen.lm_model.parameters()).dtype == torch.bfloat16  # the model stays as loaded


def test_chat_queue_seconds_reaches_the_studios_own_chat_route(demo_workspace) -> None:  # type: ignore[no-untyped-def]
    """The tab's client talks over the service's /api/chat like any other: the time a second client waits for the
    model is the tab's setting (handle() takes each session's settings from session_config(service.cfg, query))."""
    from backend.inference.chat_server import session_config

    service = ChatService(workspace_chat_config(demo_workspace))
    assert service.cfg.queue_seconds == 3.0
    message = chat_tab.on_load(demo_workspace, service, None, False, 0.7, 25, 0.8, 250, 300.0, "auto", 45.0)
    assert message.startswith("Ready"), message
    assert session_config(service.cfg, {}).queue_seconds == 45.0
