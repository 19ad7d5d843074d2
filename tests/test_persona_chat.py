"""Personas in chat (issue 15): PersonaPlex's query parameters on /api/chat (voice_prompt confined to the
voices folder, text_prompt, seed) and the engine starting from the persona's prefix."""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from chat_helpers import ServerThread, chat_config, run_async, speaking_lm, talk
from conftest import free_port

from backend.core.errors import ConfigError
from backend.core.spec import FRAME_SIZE, SAMPLE_RATE
from backend.inference.chat_engine import ChatEngine
from backend.inference.chat_server import ChatService
from backend.models.persona import voice_file


def write_voice(path: Path, hz: float = 220.0) -> Path:
    t = np.arange(int(1.2 * SAMPLE_RATE)) / SAMPLE_RATE
    sf.write(path, (0.1 * np.sin(2 * np.pi * hz * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32), SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voices")
    folder = root / "voices"
    folder.mkdir()
    write_voice(folder / "barista.wav")
    write_voice(root / "outside.wav", 330.0)
    os.symlink(root / "outside.wav", folder / "escape.wav")
    os.symlink(folder / "barista.wav", folder / "alias.wav")
    return folder


@pytest.mark.parametrize(
    "name",
    [
        "../outside.wav",
        str(Path("/etc/passwd")),
        "sub/barista.wav",
        "..",
        ".",
        "",
        "escape.wav",
        "missing.wav",
        "a\x00b",
        "x" * 300,
        "..\\outside.wav",
    ],
)
def test_voice_prompt_names_outside_the_folder_are_refused(voices: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="voice_prompt"):
        voice_file(voices, name)


def test_voice_prompt_names_inside_the_folder(voices: Path) -> None:
    assert voice_file(voices, "barista.wav") == (voices / "barista.wav").resolve()
    assert voice_file(voices, "alias.wav") == (voices / "barista.wav").resolve()  # a link that stays inside


@pytest.fixture(scope="module")
def model(demo_workspace, tmp_path_factory):
    return speaking_lm(demo_workspace.demo_lm, 400, tmp_path_factory.mktemp("chat") / "speaking-lm")


@pytest.fixture(scope="module")
def user_pcm() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.05 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)


@pytest.fixture(scope="module")
def server(demo_workspace, model, voices):
    service = ChatService(chat_config(demo_workspace, model, voices_dir=str(voices)))
    service.load()
    with ServerThread(service, free_port()) as srv:
        yield srv


def test_personaplex_query_parameters_start_a_persona_conversation(server, user_pcm) -> None:
    url = f"{server.url}?voice_prompt=barista.wav&text_prompt=You%20are%20a%20barista.&seed=7"
    conv = run_async(talk(url, user_pcm, linger=0.3))
    assert conv.handshake and not conv.errors and conv.audio
    plain = run_async(talk(f"{server.url}?seed=-1", user_pcm, linger=0.3))  # neither: today's conversation
    assert plain.handshake and not plain.errors and plain.audio


@pytest.mark.parametrize(
    "query,param",
    [
        ("voice_prompt=..%2Foutside.wav", "voice_prompt"),
        ("voice_prompt=%2Fetc%2Fpasswd", "voice_prompt"),
        ("voice_prompt=escape.wav", "voice_prompt"),
        ("voice_prompt=missing.wav", "voice_prompt"),
        ("text_prompt=" + "a" * 5000, "text_prompt"),
        ("seed=-5", "seed"),
        ("seed=lots", "seed"),
    ],
)
def test_bad_persona_parameters_are_refused_by_name(server, user_pcm, query: str, param: str) -> None:
    conv = run_async(talk(f"{server.url}?{query}", user_pcm[:SAMPLE_RATE]))
    assert not conv.handshake and len(conv.errors) == 1 and param in conv.errors[0], conv.errors
    assert conv.close_code == 1011


def test_engine_conversation_depends_on_the_persona(demo_workspace, model, voices, user_pcm) -> None:
    cfg = chat_config(demo_workspace, model, voices_dir=str(voices), audio_temperature=0.0, text_temperature=0.0)
    engine = ChatEngine(cfg)

    def conversation(**persona: str) -> np.ndarray:
        engine.start(replace(cfg, **persona))
        outs = [engine.step(user_pcm[i : i + FRAME_SIZE]).pcm for i in range(0, 8 * FRAME_SIZE, FRAME_SIZE)]
        return np.concatenate([o for o in outs if o is not None])

    plain, again = conversation(), conversation()
    np.testing.assert_array_equal(plain, again)  # greedy: a restart gives the same conversation
    barista = conversation(text_prompt="You are a barista.", voice_prompt="barista.wav")
    assert len(barista) == len(plain) + FRAME_SIZE  # after the prefix the first step already yields a frame
    assert not np.array_equal(barista[: len(plain)], plain)
    np.testing.assert_array_equal(barista, conversation(text_prompt="You are a barista.", voice_prompt="barista.wav"))
