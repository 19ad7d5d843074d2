"""`/api/chat`: moshi's websocket protocol, served by the studio's own web server (or alone, for clusters).

    python -m backend.inference.chat_server --model runs/<id>/exports/<name> --mimi ... --tokenizer ... --port 8998

Messages are binary; the first byte is the kind (as moshi.server and Kyutai's clients):
0x00 handshake (server, once the model is ready), 0x01 Ogg/Opus audio at 24 kHz (both ways),
0x02 a text piece (server), 0x04 JSON metadata (server; per-frame stats, only when the client asks
with `?meta=1`), 0x05 an error message (server). One conversation at a time per model: a second
client is told "busy" and closed; a disconnect frees the model at once.

Two tasks per conversation: `_receive` decodes Opus into 80 ms frames as they arrive; `_respond`
steps the engine on them in a worker thread. When the engine falls behind (a frame took longer
than the budget), the oldest waiting frames are skipped rather than processed late, so Moshi's
voice stays in real time instead of drifting.
"""

import asyncio
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sphn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from backend.core import config
from backend.inference.chat_config import ChatConfig
from backend.inference.chat_recording import SessionRecording
from backend.core.errors import StudioError
from backend.models.source import lm_kwargs_of
from backend.core.spec import FRAME_SIZE, NUM_CODEBOOKS, SAMPLE_RATE
from backend.core.workspace import Workspace, model_folders

if TYPE_CHECKING:  # torch and moshi load with the first model, not with the server
    from backend.inference.chat_engine import ChatEngine, FrameOutput

HANDSHAKE, AUDIO, TEXT, META, ERROR = b"\x00", b"\x01", b"\x02", b"\x04", b"\x05"
# Query parameters of Kyutai's web client that tune sampling, and the engine setting each sets.
SAMPLING_PARAMS = {"text_temperature": "text_temperature", "text_topk": "text_top_k",
                   "audio_temperature": "audio_temperature", "audio_topk": "audio_top_k"}


class ProtocolError(StudioError):
    """A message the protocol does not allow; answered with an ERROR message, the session goes on."""


@dataclass
class SessionStats:
    frames: int = 0
    skipped: int = 0
    compute_ms: float = 0.0  # of the last frame

    def meta(self, backlog: int) -> dict[str, float | int]:
        return {"frames": self.frames, "skipped": self.skipped, "compute_ms": round(self.compute_ms, 1),
                "rtf": round(self.compute_ms * SAMPLE_RATE / FRAME_SIZE / 1000, 3),
                "backlog_ms": backlog * FRAME_SIZE * 1000 // SAMPLE_RATE}


class ChatService:
    """Owns the engine (one model per process), its worker thread and the one-conversation rule."""

    def __init__(self, cfg: ChatConfig):
        self.cfg = cfg
        self.engine: "ChatEngine | None" = None
        self.busy = False
        self.last_recording: Path | None = None
        self.configured = False  # True once settings were chosen (configure), not just defaulted
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat")  # torch state stays on one thread
        self._load_lock = threading.Lock()

    def configure(self, cfg: ChatConfig) -> "ChatEngine":
        """New settings for the next conversations (the Chat tab); loads the models now if they changed."""
        engine = self.load(cfg)
        self.cfg, self.configured = cfg, True
        return engine

    def load(self, cfg: ChatConfig | None = None) -> "ChatEngine":
        """The engine for `cfg` (default: the service's); models are reloaded only when they change."""
        from backend.inference.chat_engine import ChatEngine

        cfg = cfg or self.cfg
        with self._load_lock:
            models = ("model", "mimi", "tokenizer", "device", "threads")
            if self.engine is None or any(getattr(cfg, k) != getattr(self.engine.cfg, k) for k in models):
                if self.engine is not None and self.busy:
                    raise StudioError("a conversation is in progress: end it before loading another model")
                self.engine = None  # free the old model before loading the new one
                self.engine = self.executor.submit(ChatEngine, cfg).result()
            self.engine.set_sampling(cfg.text_temperature, cfg.text_top_k, cfg.audio_temperature, cfg.audio_top_k)
            return self.engine

    async def handle(self, ws: WebSocket) -> None:
        await ws.accept()
        if self.busy:
            await ws.send_bytes(ERROR + b"busy: another conversation is in progress; try again when it ends")
            await ws.close(code=1013)
            return
        self.busy = True
        try:
            await ChatSession(self, ws).run()
        finally:
            self.busy = False


class ChatSession:
    def __init__(self, service: ChatService, ws: WebSocket):
        self.service, self.ws = service, ws
        self.frames: asyncio.Queue[np.ndarray] = asyncio.Queue()
        self.stats = SessionStats()
        self.recording = SessionRecording()
        self.send_meta = ws.query_params.get("meta") == "1"
        self.opus_in, self.opus_out = sphn.OpusStreamReader(SAMPLE_RATE), sphn.OpusStreamWriter(SAMPLE_RATE)
        self._pending = np.zeros(0, np.float32)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            cfg = self._session_config()
            engine = await loop.run_in_executor(None, self.service.load, cfg)
        except StudioError as e:
            await self._error(str(e))
            await self.ws.close(code=1011)
            return
        await loop.run_in_executor(self.service.executor, engine.reset)
        await self.ws.send_bytes(HANDSHAKE)
        receive, respond = asyncio.create_task(self._receive()), asyncio.create_task(self._respond(engine, cfg.max_lag_ms))
        try:
            done, _ = await asyncio.wait({receive, respond}, timeout=cfg.max_session_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done:
                await self._error(f"session time limit reached ({cfg.max_session_seconds:g} s)")
                await self.ws.close(code=1000)
            elif respond in done and respond.exception() is not None:
                await self._error(f"the chat engine failed: {respond.exception()}")
                await self.ws.close(code=1011)
        finally:
            for task in (receive, respond):
                task.cancel()
            await asyncio.gather(receive, respond, return_exceptions=True)
            self._save_recording()

    def _session_config(self) -> ChatConfig:
        """The service's config with the sampling the client asked for in the query string."""
        values = {}
        for param, name in SAMPLING_PARAMS.items():
            if param in self.ws.query_params:
                values[name] = self.ws.query_params[param]
        return config.from_dict(ChatConfig, config.to_dict(self.service.cfg) | values) if values else self.service.cfg

    async def _receive(self) -> None:
        """Client messages until it disconnects; audio becomes 80 ms frames on the queue."""
        while True:
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            try:
                self._accept(message.get("bytes"), message.get("text"))
            except ProtocolError as e:
                await self._error(str(e))

    def _accept(self, data: bytes | None, text: str | None) -> None:
        if data is None:
            raise ProtocolError(f"expected binary messages, got text {text[:40]!r}" if text else "empty message")
        if not data:
            raise ProtocolError("empty message")
        if data[:1] != AUDIO:
            raise ProtocolError(f"unsupported message kind 0x{data[0]:02x} (clients send 0x01 + Ogg/Opus audio)")
        try:
            pcm = self.opus_in.append_bytes(data[1:])
        except Exception as e:  # sphn raises plain exceptions on bytes that are not Ogg/Opus
            self.opus_in = sphn.OpusStreamReader(SAMPLE_RATE)  # drop the garbage it buffered
            raise ProtocolError(f"audio message is not Ogg/Opus: {e}") from None
        self._pending = np.concatenate([self._pending, pcm.astype(np.float32)])
        while len(self._pending) >= FRAME_SIZE:
            self.frames.put_nowait(self._pending[:FRAME_SIZE])
            self._pending = self._pending[FRAME_SIZE:]

    async def _respond(self, engine: "ChatEngine", max_lag_ms: float) -> None:
        loop = asyncio.get_running_loop()
        max_waiting = max(1, int(max_lag_ms * SAMPLE_RATE / 1000 // FRAME_SIZE))
        while True:
            frame = await self.frames.get()
            while self.frames.qsize() >= max_waiting:  # behind real time: skip, do not drift
                self.recording.add(frame, None)
                self.stats.skipped += 1
                frame = self.frames.get_nowait()
            out: "FrameOutput" = await loop.run_in_executor(self.service.executor, engine.step, frame)
            self.stats.frames += 1
            self.stats.compute_ms = out.compute_ms
            self.recording.add(frame, out.pcm, out.text)
            await self._send(out)

    async def _send(self, out: "FrameOutput") -> None:
        if out.pcm is not None:
            opus = self.opus_out.append_pcm(out.pcm)
            if len(opus):
                await self.ws.send_bytes(AUDIO + opus)
        if out.text:
            await self.ws.send_bytes(TEXT + out.text.encode())
        if self.send_meta:
            await self.ws.send_bytes(META + json.dumps(self.stats.meta(self.frames.qsize())).encode())

    async def _error(self, message: str) -> None:
        try:
            await self.ws.send_bytes(ERROR + message.encode())
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client is gone: nobody to tell

    def _save_recording(self) -> None:
        if self.service.cfg.record_dir and self.recording.frames:
            self.service.last_recording = self.recording.save(Path(self.service.cfg.record_dir))


def workspace_chat_config(ws: Workspace) -> ChatConfig:
    """The studio's default: the newest clean export of the workspace (else the demo LM), with the
    workspace's Mimi, tokenizer and device, recording into raw/ so conversations become dialogues."""
    clean = [m for m in model_folders(ws) if "/exports/" in m and lm_kwargs_of(ws.root / m).get("dep_q") == NUM_CODEBOOKS]
    model = ws.root / clean[0] if clean else ws.demo_lm
    return ChatConfig(model=str(model), mimi=ws.mimi_source, tokenizer=str(ws.tokenizer_path),
                      device=ws.settings.device, record_dir=str(ws.raw))


def add_chat_route(app: FastAPI, service: ChatService, path: str = "/api/chat") -> None:
    app.add_api_websocket_route(path, service.handle)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    cfg = config.from_cli(ChatConfig, config.cli_parser(ChatConfig, "Serve /api/chat (moshi's protocol) for one "
                                                                     "model.").parse_args(argv))
    service = ChatService(cfg)
    try:
        service.load()
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    app = FastAPI(title="Moshi Studio chat")
    add_chat_route(app, service)
    print(f"/api/chat ready on ws://{cfg.host}:{cfg.port}/api/chat (python -m moshi.client --host {cfg.host} "
          f"--port {cfg.port})", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
