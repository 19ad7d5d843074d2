"""/api/chat through a real uvicorn server and an Ogg/Opus websocket client, with the tiny demo models."""

import asyncio
import json
import time

import numpy as np
import pytest
import soundfile as sf

from backend.data.audio_io import load_stereo
from backend.inference.chat_server import ChatService
from backend.core.spec import FRAME_SIZE, SAMPLE_RATE
from backend.data.validate import validate_folder
from chat_helpers import ServerThread, chat_config, run_async, speaking_lm, talk
from conftest import free_port


@pytest.fixture(scope="module")
def user_pcm(demo_workspace) -> np.ndarray:
    """Real speech: the right channel of a demo dialogue."""
    audio, _ = load_stereo(sorted(demo_workspace.raw.glob("demo_cafe.*"))[0])
    return audio[1, : 6 * SAMPLE_RATE].astype(np.float32)


@pytest.fixture(scope="module")
def model(demo_workspace, tmp_path_factory):
    return speaking_lm(demo_workspace.demo_lm, 400, tmp_path_factory.mktemp("chat") / "speaking-lm")


@pytest.fixture(scope="module")
def server(demo_workspace, model, tmp_path_factory):
    record_dir = tmp_path_factory.mktemp("recordings")
    service = ChatService(chat_config(demo_workspace, model, record_dir=str(record_dir)))
    service.load()
    with ServerThread(service, free_port()) as srv:
        srv.service = service
        yield srv


def wait_idle(service: ChatService) -> None:
    deadline = time.time() + 10
    while service.busy and time.time() < deadline:
        time.sleep(0.05)
    assert not service.busy


@pytest.fixture(autouse=True)
def idle(server):
    """Each test starts once the previous conversation has ended on the server (and was saved)."""
    wait_idle(server.service)


def test_conversation_audio_and_text_both_ways(server, user_pcm):
    conv = run_async(talk(server.url + "?meta=1", user_pcm[: 4 * SAMPLE_RATE]))
    assert conv.handshake and not conv.errors
    sent = 4 * SAMPLE_RATE // FRAME_SIZE
    # Every processed frame but the first (LMGen's first step returns nothing) comes back as 80 ms of audio
    # (a loaded machine may skip a few to stay in real time; the last Opus page may still be buffered).
    processed = conv.meta[-1]["frames"]
    assert processed >= sent * 0.7 and conv.audio_seconds >= (processed - 3) * FRAME_SIZE / SAMPLE_RATE
    assert np.abs(np.concatenate(conv.audio)).max() > 1e-3
    assert len(conv.text) >= 5 and all(isinstance(t, str) and t for t in conv.text)
    assert conv.meta[-1]["frames"] + conv.meta[-1]["skipped"] == sent
    assert all(m["compute_ms"] > 0 for m in conv.meta)


def test_recording_is_a_valid_dialogue(server, user_pcm):
    before = server.service.last_recording
    run_async(talk(server.url, user_pcm[: 3 * SAMPLE_RATE], linger=0.5))
    wait_idle(server.service)
    wav = server.service.last_recording
    assert wav is not None and wav != before
    audio, rate = sf.read(wav)
    frames = 3 * SAMPLE_RATE // FRAME_SIZE
    assert rate == SAMPLE_RATE and audio.shape == (frames * FRAME_SIZE, 2)
    # Right channel = what the user sent (after the Opus round trip), left = Moshi.
    user = user_pcm[: frames * FRAME_SIZE]
    assert np.corrcoef(np.abs(audio[:, 1]), np.abs(user))[0, 1] > 0.5
    assert np.abs(audio[FRAME_SIZE * 2:, 0]).max() > 1e-3
    words = json.loads(wav.with_suffix(".json").read_text())
    assert words and all(w["speaker"] == "A" and w["end"] > w["start"] for w in words)
    reports, problems = validate_folder(wav.parent)
    report = next(r for r in reports if r.name == wav.stem)
    assert report.ok and report.words == len(words) and not problems, (report, problems)


def test_second_client_is_told_busy_and_disconnect_frees_the_model(server, user_pcm):
    async def scenario():
        hold = asyncio.Event()
        first = asyncio.create_task(talk(server.url, user_pcm[: SAMPLE_RATE], hold=hold, linger=0.0))
        while not server.service.busy:
            await asyncio.sleep(0.05)
        second = await talk(server.url, user_pcm[: SAMPLE_RATE])
        hold.set()
        first_conv = await first
        # The server frees the model as soon as it sees the close (and has saved the recording).
        start = time.perf_counter()
        while server.service.busy and time.perf_counter() - start < 2.0:
            await asyncio.sleep(0.02)
        freed_after = time.perf_counter() - start
        third = await talk(server.url, user_pcm[: SAMPLE_RATE], linger=0.3)
        return first_conv, second, third, freed_after

    first, second, third, freed_after = run_async(scenario())
    assert freed_after < 2.0
    assert first.handshake and first.audio
    assert not second.handshake and any("busy" in e for e in second.errors) and second.close_code == 1013
    assert third.handshake and third.audio and not third.errors


def test_malformed_messages_get_errors_and_the_session_goes_on(server, user_pcm):
    conv = run_async(talk(server.url, user_pcm[: 2 * SAMPLE_RATE], realtime=True,
                            extra=[b"", b"\x07abc", b"\x01not an ogg stream at all", "hello"]))
    assert conv.handshake
    assert len(conv.errors) >= 3, conv.errors
    assert any("kind 0x07" in e for e in conv.errors) and any("text" in e for e in conv.errors)
    assert conv.audio_seconds > 1.0  # the good audio after the bad messages was still answered


def test_falling_behind_skips_frames_instead_of_drifting(server, user_pcm):
    conv = run_async(talk(server.url + "?meta=1", user_pcm[: 4 * SAMPLE_RATE], realtime=False))
    assert conv.meta[-1]["skipped"] > 0
    assert conv.meta[-1]["frames"] + conv.meta[-1]["skipped"] == 4 * SAMPLE_RATE // FRAME_SIZE


def test_session_time_limit(demo_workspace, model, user_pcm):
    service = ChatService(chat_config(demo_workspace, model, max_session_seconds=1.0))
    with ServerThread(service, free_port()) as srv:
        conv = run_async(talk(srv.url, user_pcm[: 3 * SAMPLE_RATE]))
    assert conv.handshake and any("time limit" in e for e in conv.errors)
    assert conv.audio_seconds < 2.0


def test_client_sampling_parameters_are_checked(server, user_pcm):
    conv = run_async(talk(server.url + "?text_temperature=warm", user_pcm[:SAMPLE_RATE]))
    assert not conv.handshake and any("text_temperature" in e for e in conv.errors)


def test_standalone_server_from_the_command_line(demo_workspace, model, user_pcm, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    port = free_port()
    cmd = [sys.executable, "-m", "backend.inference.chat_server", "--model", str(model), "--mimi", str(demo_workspace.demo_mimi),
           "--tokenizer", str(demo_workspace.demo_tokenizer), "--device", "cpu", "--port", str(port),
           "--record-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "/api/chat ready" in proc.stdout.readline()
        time.sleep(1.0)  # uvicorn binds right after the banner
        conv = run_async(talk(f"ws://127.0.0.1:{port}/api/chat", user_pcm[: 2 * SAMPLE_RATE], linger=0.5))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert conv.handshake and conv.audio_seconds > 1.0 and not conv.errors
    assert len(list(tmp_path.glob("chat-*.wav"))) == 1


def test_standalone_server_refuses_a_model_it_cannot_chat_with(demo_workspace, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    missing = tmp_path / "no-such-model"
    result = subprocess.run([sys.executable, "-m", "backend.inference.chat_server", "--model", str(missing), "--mimi",
                             str(demo_workspace.demo_mimi), "--tokenizer", str(demo_workspace.demo_tokenizer),
                             "--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and str(missing) in result.stderr


def test_kyutai_moshi_client_talks_to_the_studio(demo_workspace, model, user_pcm, tmp_path):
    """`python -m moshi.client`, Kyutai's own command-line client, unchanged: only its sound card is a file."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    mic, speaker = tmp_path / "mic.wav", tmp_path / "speaker.wav"
    sf.write(mic, user_pcm[: 4 * SAMPLE_RATE], SAMPLE_RATE)
    service = ChatService(chat_config(demo_workspace, model, max_session_seconds=4.0, record_dir=str(tmp_path)))
    service.load()
    env = dict(os.environ, FAKE_MIC_WAV=str(mic), FAKE_SPEAKER_WAV=str(speaker),
               PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "fake_sound_card"), os.environ.get("PYTHONPATH", "")]))
    with ServerThread(service, free_port()) as srv:
        port = srv.url.split(":")[2].split("/")[0]
        result = subprocess.run([sys.executable, "-m", "moshi.client", "--host", "127.0.0.1", "--port", port],
                                env=env, capture_output=True, text=True, timeout=120)
    # It ends as moshi.client does when a server closes: "Lost connection" (here: the session time limit).
    assert result.returncode == 0 and "connected!" in result.stderr, result.stderr
    assert result.stdout.strip(), "moshi.client printed none of Moshi's text pieces"
    played, _ = sf.read(speaker)
    assert len(played) > 3 * SAMPLE_RATE and np.abs(played).max() > 0.001  # Moshi's voice reached the speaker
    (wav,) = tmp_path.glob("chat-*.wav")  # the server saw a normal session
    assert len(sf.read(wav)[0]) > 3 * SAMPLE_RATE
