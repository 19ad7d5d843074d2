"""A real /api/chat server on a free port (uvicorn in a thread) and a protocol client like moshi.client's."""

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import sphn
import torch
import uvicorn
from fastapi import FastAPI

from backend.core.spec import FRAME_SIZE, SAMPLE_RATE
from backend.core.workspace import Workspace
from backend.inference.chat_engine import ChatConfig
from backend.inference.chat_server import ChatService, add_chat_route
from backend.models.source import save_lm
from backend.models.weights import lm_kwargs_of, load_lm


def speaking_lm(demo_lm: Path, vocab_size: int, out: Path) -> Path:
    """The random demo LM with its text head limited to the demo tokenizer's pieces (the random head
    samples ids up to 32000, so it would almost never say a piece the 400-piece tokenizer has)."""
    lm = load_lm(demo_lm)
    with torch.no_grad():
        lm.text_linear.weight[vocab_size:] = 0.0
        lm.text_linear.weight[:vocab_size] *= 20.0
    return save_lm(lm, lm_kwargs_of(demo_lm), out)


class ServerThread:
    def __init__(self, service: ChatService, port: int):
        app = FastAPI()
        add_chat_route(app, service)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"ws://127.0.0.1:{port}/api/chat"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("the chat test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def standalone_server(ws: Workspace, model: Path, port: int, *args: str) -> Iterator[subprocess.Popen]:
    """`python -m backend.inference.chat_server` on `port`, as a user starts it; yields once it listens."""
    from conftest import REPO

    cmd = [
        sys.executable,
        "-m",
        "backend.inference.chat_server",
        "--model",
        str(model),
        "--mimi",
        str(ws.demo_mimi),
        "--tokenizer",
        str(ws.demo_tokenizer),
        "--device",
        "cpu",
        "--port",
        str(port),
        *args,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "/api/chat ready" in proc.stdout.readline()
        time.sleep(1.0)  # uvicorn binds right after the banner
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def run_async(coro):  # type: ignore[no-untyped-def]
    """asyncio.run in a thread of its own: Playwright's sync API keeps an event loop running in the main thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def chat_config(ws, model: Path, **kw) -> ChatConfig:  # type: ignore[no-untyped-def]
    return ChatConfig(model=str(model), mimi=str(ws.demo_mimi), tokenizer=str(ws.demo_tokenizer), device="cpu", **kw)


@dataclass
class Conversation:
    """What a client saw: Moshi's decoded audio, text pieces, metadata and errors, in order."""

    audio: list[np.ndarray] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    handshake: bool = False
    close_code: int | None = None
    sent_frames: int = 0
    sent_bytes: int = 0
    connected_at: float = 0.0  # perf_counter at the handshake
    closed_at: float = 0.0  # perf_counter once the client closed

    @property
    def audio_seconds(self) -> float:
        return sum(len(a) for a in self.audio) / SAMPLE_RATE


def opus_messages(pcm: np.ndarray) -> list[bytes]:
    """`pcm` as the client messages of moshi's protocol: 0x01 + Ogg/Opus, one per 80 ms frame."""
    writer = sphn.OpusStreamWriter(SAMPLE_RATE)
    return [
        b"\x01" + writer.append_pcm(pcm[i : i + FRAME_SIZE]) for i in range(0, len(pcm) - FRAME_SIZE + 1, FRAME_SIZE)
    ]


async def talk(
    url: str,
    audio: np.ndarray | list[bytes],
    *,
    speed: float | None = 1.0,
    extra: list[bytes] = (),
    linger: float = 1.0,
    hold: asyncio.Event | None = None,
) -> Conversation:
    """Send `audio` (PCM, or messages from `opus_messages`) in 80 ms frames, paced at `speed` times real
    time (None: as fast as possible), plus `extra` raw messages first; collect everything the server
    says until `linger` s after the last frame."""
    conv = Conversation()
    messages = opus_messages(audio) if isinstance(audio, np.ndarray) else audio
    reader = sphn.OpusStreamReader(SAMPLE_RATE)
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:

        async def receive() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                kind, payload = msg.data[0], msg.data[1:]
                if kind == 0:
                    conv.handshake = True
                    conv.connected_at = time.perf_counter()
                elif kind == 1:
                    pcm_out = reader.append_bytes(payload)
                    if len(pcm_out):
                        conv.audio.append(pcm_out)
                elif kind == 2:
                    conv.text.append(payload.decode())
                elif kind == 4:
                    conv.meta.append(json.loads(payload))
                elif kind == 5:
                    conv.errors.append(payload.decode())

        listener = asyncio.create_task(receive())
        for _ in range(300):
            if conv.handshake or listener.done():
                break
            await asyncio.sleep(0.05)
        if conv.handshake:
            for message in extra:
                await ws.send_bytes(message) if isinstance(message, bytes) else await ws.send_str(message)
            start = time.perf_counter()
            for i, message in enumerate(messages):
                if ws.closed:  # the server ended the conversation (time limit)
                    break
                try:
                    await ws.send_bytes(message)
                except ConnectionResetError:  # aiohttp's ClientConnectionResetError derives from it
                    break
                conv.sent_frames, conv.sent_bytes = i + 1, conv.sent_bytes + len(message)
                if speed is not None:
                    due = start + (i + 1) * FRAME_SIZE / SAMPLE_RATE / speed
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
            if hold is not None:
                await hold.wait()
            await asyncio.sleep(linger)
            await ws.close()
            conv.closed_at = time.perf_counter()
        await asyncio.wait_for(listener, 10)
        conv.close_code = ws.close_code
    return conv
