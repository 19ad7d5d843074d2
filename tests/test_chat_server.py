"""/api/chat through a real uvicorn server and an Ogg/Opus websocket client, with the tiny demo models."""

import asyncio
import json
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import sphn
from chat_helpers import ServerThread, chat_config, opus_messages, run_async, speaking_lm, standalone_server, talk
from conftest import free_port

from backend.core.spec import FRAME_SIZE, SAMPLE_RATE
from backend.data.audio_io import load_stereo
from backend.data.validate import validate_folder
from backend.inference.chat_server import AUDIO, MAX_MESSAGE_BYTES, ChatService


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


def decoded_frames(messages: list[bytes]) -> np.ndarray:
    """The 80 ms frames the server's Opus decoder makes of a client's messages (the decoder is deterministic)."""
    reader = sphn.OpusStreamReader(SAMPLE_RATE)
    pcm = np.concatenate([reader.append_bytes(m[1:]) for m in messages])
    return pcm[: len(pcm) // FRAME_SIZE * FRAME_SIZE].reshape(-1, FRAME_SIZE)


def test_recording_is_a_valid_dialogue(server, user_pcm):
    before = server.service.last_recording
    messages = opus_messages(user_pcm[: 3 * SAMPLE_RATE])
    conv = run_async(talk(server.url + "?meta=1", messages))
    wait_idle(server.service)
    wav = server.service.last_recording
    assert wav is not None and wav != before
    audio, rate = sf.read(wav)
    processed = conv.meta[-1]["frames"]
    assert rate == SAMPLE_RATE and audio.shape == (processed * FRAME_SIZE, 2)
    # Right channel = exactly the frames the model processed, in order (any it skipped to keep up are not
    # recorded); left = Moshi.
    sent, position = decoded_frames(messages), 0
    for frame in audio[:, 1].reshape(-1, FRAME_SIZE):
        while position < len(sent) and not np.allclose(frame, sent[position], atol=1e-3):
            position += 1
        assert position < len(sent), "the recording holds audio the client did not send, or out of order"
        position += 1
    assert np.abs(audio[FRAME_SIZE * 2 :, 0]).max() > 1e-3
    words = json.loads(wav.with_suffix(".json").read_text())
    assert words and all(w["speaker"] == "A" and w["end"] > w["start"] for w in words)
    reports, problems = validate_folder(wav.parent)
    report = next(r for r in reports if r.name == wav.stem)
    assert report.ok and report.words == len(words) and not problems, (report, problems)


def test_second_client_is_told_busy_and_disconnect_frees_the_model(server, user_pcm):
    async def scenario():
        hold = asyncio.Event()
        first = asyncio.create_task(talk(server.url, user_pcm[:SAMPLE_RATE], hold=hold, linger=0.0))
        while not server.service.busy:
            await asyncio.sleep(0.05)
        second = await talk(server.url, user_pcm[:SAMPLE_RATE])
        hold.set()
        first_conv = await first
        # The server frees the model as soon as it sees the close (and has saved the recording).
        start = time.perf_counter()
        while server.service.busy and time.perf_counter() - start < 2.0:
            await asyncio.sleep(0.02)
        freed_after = time.perf_counter() - start
        third = await talk(server.url, user_pcm[:SAMPLE_RATE], linger=0.3)
        return first_conv, second, third, freed_after

    first, second, third, freed_after = run_async(scenario())
    assert freed_after < 2.0
    assert first.handshake and first.audio
    assert not second.handshake and any("busy" in e for e in second.errors) and second.close_code == 1013
    assert third.handshake and third.audio and not third.errors


def test_clients_queue_for_the_model_up_to_queue_seconds(demo_workspace, model, user_pcm):
    """As moshi.server does (it holds a second client until the first conversation ends), within queue_seconds:
    two clients that arrive during a conversation each get the model in turn, once the one before them leaves."""
    service = ChatService(chat_config(demo_workspace, model, queue_seconds=60.0))
    service.load()

    async def scenario():
        first = asyncio.create_task(talk(url, user_pcm[:SAMPLE_RATE], linger=0.0))
        while not service.busy:
            await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(talk(url, user_pcm[:SAMPLE_RATE], linger=0.0)) for _ in range(2)]
        return await first, *await asyncio.gather(*waiting)

    with ServerThread(service, free_port()) as srv:
        url = srv.url
        convs = run_async(scenario())
    assert all(c.handshake and c.audio and not c.errors for c in convs), [c.errors for c in convs]
    starts = sorted(c.connected_at for c in convs)
    ends = sorted(c.closed_at for c in convs)
    assert starts[1] >= ends[0] and starts[2] >= ends[1]  # one at a time, in turn


def test_malformed_messages_get_errors_and_the_session_goes_on(server, user_pcm):
    conv = run_async(
        talk(server.url, user_pcm[: 2 * SAMPLE_RATE], extra=[b"", b"\x07abc", b"\x01not an ogg stream at all", "hello"])
    )
    assert conv.handshake
    assert len(conv.errors) >= 3, conv.errors
    assert any("kind 0x07" in e for e in conv.errors) and any("text" in e for e in conv.errors)
    assert conv.audio_seconds > 1.0  # the good audio after the bad messages was still answered


def test_falling_behind_skips_frames_instead_of_drifting(server, user_pcm):
    conv = run_async(talk(server.url + "?meta=1", user_pcm[: 4 * SAMPLE_RATE], speed=None))
    assert conv.meta[-1]["skipped"] > 0
    assert conv.meta[-1]["frames"] + conv.meta[-1]["skipped"] == 4 * SAMPLE_RATE // FRAME_SIZE


def test_session_time_limit(demo_workspace, model, user_pcm):
    service = ChatService(chat_config(demo_workspace, model, max_session_seconds=1.0))
    with ServerThread(service, free_port()) as srv:
        conv = run_async(talk(srv.url, user_pcm[: 3 * SAMPLE_RATE]))
    assert conv.handshake and any("time limit" in e for e in conv.errors)
    assert conv.audio_seconds < 2.0


# What Kyutai's web client sends (its defaults, and the ends of its sliders), plus greedy text and a full top-k.
KYUTAI_QUERY = (
    "text_temperature=0.7&text_topk=25&audio_temperature=0.8&audio_topk=250&pad_mult=0&text_seed=1234"
    "&audio_seed=5678&repetition_penalty_context=64&repetition_penalty=1"
)


@pytest.mark.parametrize(
    "query",
    [
        KYUTAI_QUERY,
        "text_temperature=0.2&text_topk=10&audio_temperature=1.2&audio_topk=500",
        "text_temperature=0&text_topk=32000&audio_topk=2048",
    ],
)
def test_client_sampling_parameters_in_range_are_used(server, user_pcm, query):
    conv = run_async(talk(f"{server.url}?{query}", user_pcm[:SAMPLE_RATE], linger=0.3))
    assert conv.handshake and not conv.errors and conv.audio
    asked = dict(item.split("=") for item in query.split("&"))
    lm_gen = server.service.engine.lm_gen
    used = {
        "text_temperature": lm_gen.temp_text,
        "text_topk": lm_gen.top_k_text,
        "audio_temperature": lm_gen.temp,
        "audio_topk": lm_gen.top_k,
    }
    assert all(float(asked[k]) == v for k, v in used.items() if k in asked), (asked, used)


@pytest.mark.parametrize(
    "param,value",
    [
        ("text_temperature", "warm"),
        ("text_temperature", "nan"),
        ("audio_temperature", "-5"),
        ("audio_temperature", "inf"),
        ("text_temperature", "1e9"),
        ("text_topk", "-1"),
        ("audio_topk", "0"),
        ("text_topk", "1e9"),
        ("audio_topk", "1000000000"),
        ("audio_topk", "2.5"),
    ],
)
def test_client_sampling_parameters_out_of_range_are_refused_by_name(server, user_pcm, param, value):
    conv = run_async(talk(f"{server.url}?{param}={value}", user_pcm[:SAMPLE_RATE]))
    assert not conv.handshake and len(conv.errors) == 1 and param in conv.errors[0], conv.errors
    assert conv.close_code == 1011


def test_kyutai_seeds_choose_the_conversation(server, user_pcm):
    """The client's per-conversation text_seed/audio_seed: the same pair gives the same conversation, another pair
    another one. Sent at half real time, so the model processes every frame (no skips)."""

    def conversation(seeds: str) -> tuple[list[str], bytes]:
        wait_idle(server.service)
        conv = run_async(talk(f"{server.url}?{seeds}", user_pcm[:SAMPLE_RATE], speed=0.5, linger=0.5))
        assert conv.handshake and not conv.errors and conv.audio, conv.errors
        return conv.text, np.concatenate(conv.audio).tobytes()

    first = conversation("text_seed=1234&audio_seed=5678")
    assert conversation("text_seed=1234&audio_seed=5678") == first
    assert conversation("text_seed=1234&audio_seed=5679") != first


@pytest.mark.parametrize(
    "query,param",
    [
        ("pad_mult=0.5", "pad_mult"),
        ("repetition_penalty=1.3", "repetition_penalty"),
        ("repetition_penalty=nan", "repetition_penalty"),
        ("text_seed=-1", "text_seed"),
        ("audio_seed=2.5", "audio_seed"),
        ("audio_seed=1e12", "audio_seed"),
        ("seed=5&text_seed=1", "seed"),
    ],
)
def test_kyutai_settings_the_model_cannot_follow_are_refused_by_name(server, user_pcm, query, param):
    conv = run_async(talk(f"{server.url}?{query}", user_pcm[:SAMPLE_RATE]))
    assert not conv.handshake and len(conv.errors) == 1 and param in conv.errors[0], conv.errors
    assert conv.close_code == 1011


def test_reconnecting_right_after_a_clean_close_is_never_busy(server, user_pcm):
    """Ten clients back to back, each closing cleanly right after the handshake: the model is free as soon as
    the close completes (the server sees the old connection end a round trip later)."""

    async def cycles():
        return [await talk(server.url, [], linger=0.0) for _ in range(10)]

    conversations = run_async(cycles())
    assert [c.errors for c in conversations] == [[]] * 10
    assert all(c.handshake for c in conversations)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def test_flood_faster_than_real_time_is_bounded(demo_workspace, model, user_pcm, tmp_path):
    """A client sending 100x real time for 10 s (1000 s of audio) to the standalone server: the input buffer
    drops what the model cannot take, the recording holds only what the model processed (never more than
    the session), the server's memory stays flat and its page keeps answering."""
    flood = opus_messages(np.tile(user_pcm, 1000 * SAMPLE_RATE // len(user_pcm) + 1)[: 1000 * SAMPLE_RATE])
    port, limit = free_port(), 30.0
    latencies: list[float] = []
    with standalone_server(
        demo_workspace, model, port, "--record-dir", str(tmp_path), "--max-session-seconds", str(limit)
    ) as proc:
        rss = [rss_mb(proc.pid)]
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30).read()
                    latencies.append(time.perf_counter() - start)
                except OSError:
                    latencies.append(float("inf"))
                rss.append(rss_mb(proc.pid))
                stop.wait(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            started = time.perf_counter()
            conv = run_async(talk(f"ws://127.0.0.1:{port}/api/chat?meta=1", flood, speed=100.0, linger=1.0))
            flood_s = time.perf_counter() - started - 1.0
            deadline = time.time() + 60
            while not list(tmp_path.glob("chat-*.wav")) and time.time() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            stop.set()
            watcher.join(timeout=40)
        rss_after = rss_mb(proc.pid)
    (wav,) = tmp_path.glob("chat-*.wav")
    recorded, _ = sf.read(wav)
    last = conv.meta[-1]
    figures = {
        "sent_bytes": conv.sent_bytes,
        "sent_frames": conv.sent_frames,
        "flood_s": round(flood_s, 1),
        "processed": last["frames"],
        "dropped": last["skipped"],
        "rss_before_mb": round(rss[0]),
        "rss_peak_mb": round(max(rss)),
        "rss_after_mb": round(rss_after),
        "recorded_s": len(recorded) / SAMPLE_RATE,
        "session_s": round(conv.closed_at - conv.connected_at, 1),
        "max_get_s": round(max(latencies), 3),
        "gets": len(latencies),
    }
    print("flood figures:", figures)
    assert conv.handshake and conv.sent_frames == len(flood) and conv.sent_frames / flood_s > 50, figures
    assert last["frames"] + last["skipped"] == conv.sent_frames and last["skipped"] > 0.9 * len(flood), figures
    # Only what the model processed is recorded, and that is never more than the session lasted.
    assert len(recorded) == last["frames"] * FRAME_SIZE, figures
    assert len(recorded) / SAMPLE_RATE <= min(limit, conv.closed_at - conv.connected_at + 0.08), figures
    assert max(rss) - rss[0] < 100 and rss_after - rss[0] < 100, figures
    assert len(latencies) >= 10 and max(latencies) < 1.0, figures


def test_standalone_server_from_the_command_line(demo_workspace, model, user_pcm, tmp_path):
    """A conversation through `python -m backend.inference.chat_server`, after a client that sent 5 minutes of
    audio in one message was cut off unread (close code 1009: message too big) without the server's memory
    growing by the decoded audio (5 min = 29 MB)."""
    port = free_port()
    pages = opus_messages(np.tile(user_pcm, 50))
    huge = AUDIO + b"".join(m[1:] for m in pages)
    assert len(huge) > MAX_MESSAGE_BYTES
    with standalone_server(demo_workspace, model, port, "--record-dir", str(tmp_path)) as proc:
        rss_before = rss_mb(proc.pid)
        refused = run_async(talk(f"ws://127.0.0.1:{port}/api/chat", [huge], linger=2.0))
        rss_after = rss_mb(proc.pid)
        conv = run_async(talk(f"ws://127.0.0.1:{port}/api/chat", user_pcm[: 2 * SAMPLE_RATE], linger=0.5))
    assert refused.handshake and refused.close_code == 1009 and rss_after - rss_before < 20, (refused, rss_after)
    assert conv.handshake and conv.audio_seconds > 1.0 and not conv.errors
    assert len(list(tmp_path.glob("chat-*.wav"))) == 1


@pytest.mark.parametrize(
    "flags,named",
    [
        (["--model", "{missing}"], "{missing}"),
        (["--text-top-k", "0"], "text_top_k"),
        (["--max-session-seconds", "1e12"], "max_session_seconds"),
    ],
)
def test_standalone_server_refuses_what_it_cannot_serve(demo_workspace, model, tmp_path, flags, named):
    import subprocess
    import sys

    from conftest import REPO

    missing = str(tmp_path / "no-such-model")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.inference.chat_server",
            "--model",
            str(model),
            "--mimi",
            str(demo_workspace.demo_mimi),
            "--tokenizer",
            str(demo_workspace.demo_tokenizer),
            "--device",
            "cpu",
            *[f.format(missing=missing) for f in flags],
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and named.format(missing=missing) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def moshi_client(args: list[str], mic_pcm: np.ndarray, folder: Path):  # -> (CompletedProcess, played audio)
    """`python -m moshi.client ARGS`, Kyutai's own command-line client, unchanged: only its sound card is a file."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    mic, speaker = folder / "mic.wav", folder / "speaker.wav"
    sf.write(mic, mic_pcm, SAMPLE_RATE)
    env = dict(
        os.environ,
        FAKE_MIC_WAV=str(mic),
        FAKE_SPEAKER_WAV=str(speaker),
        PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "fake_sound_card"), os.environ.get("PYTHONPATH", "")]),
    )
    result = subprocess.run(
        [sys.executable, "-m", "moshi.client", *args], env=env, capture_output=True, text=True, timeout=120
    )
    return result, (sf.read(speaker)[0] if speaker.exists() else np.zeros(0))


def test_kyutai_moshi_client_talks_to_the_studio(demo_workspace, model, user_pcm, tmp_path):
    service = ChatService(chat_config(demo_workspace, model, max_session_seconds=4.0, record_dir=str(tmp_path)))
    service.load()
    with ServerThread(service, free_port()) as srv:
        port = srv.url.split(":")[2].split("/")[0]
        result, played = moshi_client(["--host", "127.0.0.1", "--port", port], user_pcm[: 4 * SAMPLE_RATE], tmp_path)
    # It ends as moshi.client does when a server closes: "Lost connection" (here: the session time limit).
    assert result.returncode == 0 and "connected!" in result.stderr, result.stderr
    assert result.stdout.strip(), "moshi.client printed none of Moshi's text pieces"
    assert len(played) > 3 * SAMPLE_RATE and np.abs(played).max() > 0.001  # Moshi's voice reached the speaker
    (wav,) = tmp_path.glob("chat-*.wav")  # the server saw a normal session (recording what the model processed)
    assert SAMPLE_RATE < len(sf.read(wav)[0]) <= 4 * SAMPLE_RATE


def test_moshi_client_logs_in_with_the_account_in_its_url(demo_workspace, model, user_pcm, tmp_path):
    """With accounts, moshi.client (which has no login option) connects given `--url ws://user:pass@host:port`, as
    the README says; with --host/--port it is refused."""
    (tmp_path / "users").write_text("ann:s3cret\n")
    port = free_port()
    mic = user_pcm[: 2 * SAMPLE_RATE]
    with standalone_server(
        demo_workspace, model, port, "--auth-file", str(tmp_path / "users"), "--max-session-seconds", "2"
    ):
        anonymous, _ = moshi_client(["--host", "127.0.0.1", "--port", str(port)], mic, tmp_path)
        result, played = moshi_client(["--url", f"ws://ann:s3cret@127.0.0.1:{port}"], mic, tmp_path)
    assert "connected!" not in anonymous.stderr and "401" in anonymous.stderr, anonymous.stderr
    assert result.returncode == 0 and "connected!" in result.stderr, result.stderr
    assert len(played) > SAMPLE_RATE and np.abs(played).max() > 0.001


def test_a_client_that_leaves_during_its_persona_prefix_frees_the_model(demo_workspace, model, user_pcm):
    """Issue 22.13: the longest role text a client may send, and the client leaves 0.5 s later (before the
    handshake). The server stops stepping that prefix (the next client is not told "busy" and starts at once)
    and logs no ASGI traceback for the client that left."""
    import aiohttp

    from backend.models.persona import MAX_TEXT_PROMPT

    role = ("You are a patient barista who explains every coffee at length. " * 80)[:MAX_TEXT_PROMPT]
    port = free_port()

    async def leave_then_talk():
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}/api/chat", params={"text_prompt": role})
            await asyncio.sleep(0.5)
            await ws.close()
        start = time.perf_counter()
        conv = await talk(f"ws://127.0.0.1:{port}/api/chat", user_pcm[:SAMPLE_RATE], linger=0.3)
        return conv, conv.connected_at - start

    with standalone_server(demo_workspace, model, port) as proc:
        conv, wait = run_async(leave_then_talk())
        time.sleep(0.5)
        proc.terminate()
        log = proc.communicate(timeout=20)[0]
    assert conv.handshake and not conv.errors, (conv.errors, log)
    assert wait < 2.0, f"the next client waited {wait:.1f} s for the model"
    assert "Traceback" not in log and "Exception in ASGI" not in log, log
