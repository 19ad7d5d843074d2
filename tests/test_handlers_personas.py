"""Persona fields of the Data, Continuations and Chat tabs, through their handlers (no browser)."""

from pathlib import Path

import soundfile as sf

from backend.core.spec import SAMPLE_RATE
from backend.data.raw_personas import voice_pick, voice_prompt_path
from backend.models.persona import MAX_TEXT_PROMPT
from studio import data_tab
from tests.handler_helpers import escapes, make_workspace, outside


def test_clip_persona_saved_listed_and_offered(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    msg, (voices, voice), table = data_tab.on_save_persona(
        ws, "demo_cafe", "A", "You are a barista.", None, 0.5, 2.0, None
    )
    assert msg.startswith("✔"), msg
    assert voice == "demo_cafe.A.wav" and voices == [voice]
    clip, sr = sf.read(ws.root / "voices" / voice)
    assert sr == SAMPLE_RATE and len(clip) == int(1.5 * SAMPLE_RATE)
    assert data_tab.persona_rows(ws) == [["demo_cafe", "A", "You are a barista.", "demo_cafe.A.wav"]]
    assert "<td>demo_cafe.A.wav</td>" in table
    speaker, text, (_, picked), _ = data_tab.on_persona(ws, "demo_cafe")
    assert (speaker, text, picked) == ("A", "You are a barista.", voice)
    assert voice_pick(ws, voice) == ([voice], voice)
    assert voice_prompt_path(ws, voice) == str((ws.root / "voices" / voice).resolve())
    # empty text and no voice removes it
    msg, _, table = data_tab.on_save_persona(ws, "demo_cafe", "A", "", None, None, None, None)
    assert "removed" in msg and table == "<p>No personas yet.</p>"


def test_hostile_persona_values_refused(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    before = outside(tmp_path, ws)
    bad = [
        ("../../x", "A", "hi", None, None, None),  # not a dialogue of raw/
        ("demo_cafe", "A", "x" * (MAX_TEXT_PROMPT + 1), None, None, None),  # role text too long
        ("demo_cafe", "A", "hi", None, 0.0, 1e6),  # clip past the audio's end
        ("demo_cafe", "A", "hi", None, 3.0, 1.0),  # reversed clip
        ("demo_cafe", "A", "hi", None, float("nan"), 1.0),
        ("demo_cafe", "C", "hi", None, None, None),
    ]
    bad += [("demo_cafe", "A", "hi", e, None, None) for e in escapes(tmp_path) + ["../settings.json"]]
    for name, speaker, text, voice, start, end in bad:
        msg, _, table = data_tab.on_save_persona(ws, name, speaker, text, voice, start, end, None)
        assert msg.startswith("✘"), (name, voice, start, end, msg)
        assert data_tab.persona_rows(ws) == [] and "<table" not in table
    assert not list(ws.raw.glob("*.persona.json"))
    for e in escapes(tmp_path):
        try:
            voice_prompt_path(ws, e)
        except Exception as err:
            assert "voice prompt" in str(err)
        else:
            raise AssertionError(e)
    assert outside(tmp_path, ws) == before


def test_uploaded_voice_copied_into_voices(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    upload = tmp_path / "up load..wav"
    sf.write(upload, [0.0] * SAMPLE_RATE, SAMPLE_RATE)
    msg, (voices, voice), _ = data_tab.on_save_persona(ws, "demo_cafe", "B", "", None, None, None, str(upload))
    assert msg.startswith("✔") and voice == "up_load..wav" and (ws.root / "voices" / voice).is_file()


def test_chat_refuses_voice_outside_voices(tmp_path: Path) -> None:
    from backend.inference.chat_server import ChatService, workspace_chat_config
    from studio import chat_tab

    ws = make_workspace(tmp_path)
    service = ChatService(workspace_chat_config(ws))
    for voice in escapes(tmp_path) + ["../settings.json"]:
        message = chat_tab.on_load(ws, service, None, True, 0.7, 25, 0.8, 250, 300.0, persona=("hi", voice))
        assert message.startswith("**Error:** voice_prompt"), message
    message = chat_tab.on_load(
        ws, service, None, True, 0.7, 25, 0.8, 250, 300.0, persona=("x" * (MAX_TEXT_PROMPT + 1), None)
    )
    assert message.startswith("**Error:** text_prompt"), message
    assert service.engine is None and not service.configured


def test_persona_demo_listed_with_its_voices(tmp_path: Path) -> None:
    from backend.demo.workspace import copy_demo_personas

    ws = make_workspace(tmp_path)
    assert copy_demo_personas(ws, dialogues=False) == [] and not list(ws.raw.glob("persona_*"))
    assert voice_pick(ws, None)[0] == ["persona_barista.wav", "persona_librarian.wav"]
    assert len(copy_demo_personas(ws, dialogues=True)) == 2
    rows = data_tab.persona_rows(ws)
    assert rows == [
        ["persona_barista", "A", "You are a barista in a busy cafe.", "persona_barista.wav"],
        ["persona_librarian", "A", "You are a librarian in a quiet library.", "persona_librarian.wav"],
    ]
    assert "<td>You are a librarian in a quiet library.</td>" in data_tab.persona_table(ws)
    assert "persona_barista" in data_tab.dialogue_names(ws)  # the .persona.json is no transcript


def test_build_carries_raw_personas_into_the_dataset(tmp_path: Path) -> None:
    from backend.dataset.personas import load_personas
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig
    from backend.demo.workspace import copy_demo_personas, create_demo_workspace

    ws = create_demo_workspace(tmp_path / "ws", random_codec=True)
    copy_demo_personas(ws, dialogues=True)
    data_tab.on_save_persona(ws, "demo_cafe", "B", "You are a customer.", None, None, None, None)  # text only
    result = prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))
    assert "3 persona(s) written to the dataset" in result.markdown()
    personas = load_personas(ws.dataset)
    assert set(personas) == {("train/persona_barista", "A"), ("train/persona_librarian", "A"), ("train/demo_cafe", "B")}
    assert personas[("train/persona_barista", "A")].text == "You are a barista in a busy cafe."
    assert personas[("train/persona_barista", "A")].voice.shape[1] > 0  # the voice file's Mimi codes
    assert personas[("train/demo_cafe", "B")].voice.shape[1] == 0
