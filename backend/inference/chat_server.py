"""`/api/chat`: moshi's websocket protocol, served by the studio's own web server (or alone, for clusters).

    python -m backend.inference.chat_server --model runs/<id>/exports/<name> --mimi ... --tokenizer ... --port 8998

Messages are binary; the first byte is the kind (as moshi.server and Kyutai's clients):
0x00 handshake (server, once the model is ready), 0x01 Ogg/Opus audio at 24 kHz (both ways),
0x02 a text piece (server), 0x04 JSON metadata (server; per-frame stats, only when the client asks
with `?meta=1`), 0x05 an error message (server). One conversation at a time per model: a second
client waits its turn up to `queue_seconds` (moshi.server: without limit), then is told "busy" and closed;
a disconnect frees the model at once, also while the persona prefix is stepped before the handshake.
Standalone, the server is behind the studio's access rules (backend/web: Host and Origin checks, accounts off
loopback, TLS) and can serve a built web client at / (--static).
Query parameters: the sampling ones and Kyutai's text_seed/audio_seed set the session's settings; Kyutai's settings
moshi's LMGen has no knob for are accepted at their neutral value only (README, "Kyutai's web client").

Two tasks per conversation: `_receive` decodes Opus into 80 ms frames as they arrive; `_respond`
steps the engine on them in a worker thread, never faster than real time. Between the two, a
bounded buffer holds at most `max_lag_ms` of input: when the engine falls behind (a frame took
longer than the budget) or a client sends faster than real time, the oldest waiting frames are
dropped (and counted as skipped) rather than processed late, so Moshi's voice stays in real time
and a flooding client costs no memory. A conversation lasts at most `max_session_seconds`; only
the frames the model processed are recorded, and the recording is written off the event loop.
"""

import asyncio
import contextlib
import json
import math
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sphn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse

from backend.core import config
from backend.core.errors import ConfigError, StudioError
from backend.core.spec import FRAME_RATE, FRAME_SIZE, NUM_CODEBOOKS, SAMPLE_RATE
from backend.core.workspace import Workspace
from backend.inference.chat_config import ChatConfig
from backend.inference.chat_recording import SessionRecording
from backend.models.checkpoints import model_folders
from backend.models.persona import check_text_prompt, voice_file
from backend.models.weights import lm_kwargs_of
from backend.web.access import Access, ServeConfig, access_of
from backend.web.gate import AccessGate
from backend.web.serve import serve
from backend.web.static import client_files

if TYPE_CHECKING:  # torch and moshi load with the first model, not with the server
    from backend.inference.chat_engine import ChatEngine, FrameOutput

HANDSHAKE, AUDIO, TEXT, META, ERROR = b"\x00", b"\x01", b"\x02", b"\x04", b"\x05"
# Query parameters of Kyutai's web client that tune sampling, and the engine setting each sets.
SAMPLING_PARAMS = {
    "text_temperature": "text_temperature",
    "text_topk": "text_top_k",
    "audio_temperature": "audio_temperature",
    "audio_topk": "audio_top_k",
}
# PersonaPlex's web client: persona (role text, a voice file name in the voices folder) and seed (-1: the server's).
PERSONA_PARAMS = {"text_prompt": "text_prompt", "voice_prompt": "voice_prompt", "seed": "seed"}
MAX_SEED = 2**63 - 1
# Kyutai's web client draws a text and an audio seed per conversation (0 to 1e6). moshi's LMGen samples both streams
# from torch's one generator, so the pair makes one seed: the same pair gives the same conversation.
KYUTAI_SEEDS = ("text_seed", "audio_seed")
MAX_KYUTAI_SEED = 2**31 - 1
# Its other settings have no knob in moshi's LMGen: their neutral value (the client's default) is accepted, any
# other refused by name rather than ignored. repetition_penalty_context only matters with a penalty.
NEUTRAL_PARAMS = {"pad_mult": 0.0, "repetition_penalty": 1.0}
# A microphone client sends an Ogg page every 20-80 ms: a few hundred bytes. A bigger message would decode into
# minutes of audio on the event loop at once (and the memory for it): the web server (uvicorn's ws_max_size)
# closes the connection with code 1009 before reading more than this.
MAX_MESSAGE_BYTES = 1 << 16


class ProtocolError(StudioError):
    """A message the protocol does not allow; answered with an ERROR message, the session goes on."""


@dataclass
class SessionStats:
    frames: int = 0
    skipped: int = 0
    compute_ms: float = 0.0  # of the last frame

    def meta(self, backlog: int) -> dict[str, float | int]:
        return {
            "frames": self.frames,
            "skipped": self.skipped,
            "compute_ms": round(self.compute_ms, 1),
            "rtf": round(self.compute_ms * SAMPLE_RATE / FRAME_SIZE / 1000, 3),
            "backlog_ms": backlog * FRAME_SIZE * 1000 // SAMPLE_RATE,
        }


class ChatService:
    """Owns the engine (one model per process), its worker thread and the one-conversation rule."""

    def __init__(self, cfg: ChatConfig):
        self.cfg = cfg
        self.engine: "ChatEngine | None" = None
        self._idle = asyncio.Event()  # no conversation holds the model
        self._idle.set()
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
            models = ("model", "mimi", "tokenizer", "device", "dtype", "threads")
            if self.engine is None or any(getattr(cfg, k) != getattr(self.engine.cfg, k) for k in models):
                if self.engine is not None and self.busy:
                    raise StudioError("a conversation is in progress: end it before loading another model")
                self.engine = None  # free the old model before loading the new one
                self.engine = self.executor.submit(ChatEngine, cfg).result()
            self.engine.set_sampling(cfg.text_temperature, cfg.text_top_k, cfg.audio_temperature, cfg.audio_top_k)
            return self.engine

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    async def handle(self, ws: WebSocket) -> None:
        await ws.accept()
        try:
            cfg = session_config(self.cfg, ws.query_params)
        except StudioError as e:
            await tell(ws, str(e), 1011)
            return
        # Waiting clients queue for the model (up to queue_seconds): a client that reconnects right after a clean
        # close can get here before the server has seen that close (the old connection lingers a round trip after
        # the close handshake), so even the default lets that conversation end before calling the model busy.
        # Whoever wakes first takes the model (no await between the check and the claim); the others wait on.
        deadline = asyncio.get_running_loop().time() + cfg.queue_seconds
        while self.busy:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                await tell(ws, "busy: another conversation is in progress; try again when it ends", 1013)
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), left)
        self._idle.clear()
        try:
            await ChatSession(self, ws, cfg).run()
        finally:
            self._idle.set()


def session_config(base: ChatConfig, query: Mapping[str, str]) -> ChatConfig:
    """`base` with the sampling a client asked for in the query string; a bad value is refused by its name."""
    check_unsupported_params(query)
    query = {**query, **kyutai_seed(query)}
    values, cfg = config.to_dict(base), base
    for param, name in (SAMPLING_PARAMS | PERSONA_PARAMS).items():
        if param in query and not (param == "seed" and query[param] == "-1"):
            values[name] = query[param]
            try:
                cfg = config.from_dict(ChatConfig, values)
                check_persona_params(cfg)
            except ConfigError as e:
                raise ConfigError(f"query parameter {param}={query[param][:40]!r}: {e}") from None
    return cfg


def query_number(query: Mapping[str, str], param: str) -> float:
    try:
        value = float(query[param])
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise ConfigError(f"query parameter {param}={query[param][:40]!r}: not a number")
    return value


def check_unsupported_params(query: Mapping[str, str]) -> None:
    for param, neutral in NEUTRAL_PARAMS.items():
        if param in query and query_number(query, param) != neutral:
            raise ConfigError(
                f"query parameter {param}={query[param][:40]!r}: this server runs moshi's LMGen, "
                f"which has no such setting; only {param}={neutral:g} (no change) is served"
            )


def kyutai_seed(query: Mapping[str, str]) -> dict[str, str]:
    """The session's `seed` from Kyutai's text_seed/audio_seed (none given: {})."""
    if not any(param in query for param in KYUTAI_SEEDS):
        return {}
    if query.get("seed", "-1") != "-1":
        raise ConfigError("query parameters seed and text_seed/audio_seed: give one or the other")
    seeds = []
    for param in KYUTAI_SEEDS:
        value = query_number(query, param) if param in query else 0.0
        if not (value.is_integer() and 0 <= value <= MAX_KYUTAI_SEED):
            raise ConfigError(f"query parameter {param}={query[param][:40]!r}: an integer from 0 to {MAX_KYUTAI_SEED}")
        seeds.append(int(value))
    return {"seed": str(seeds[0] * (MAX_KYUTAI_SEED + 1) + seeds[1])}


def check_persona_params(cfg: ChatConfig) -> None:
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed must be -1 or from 0 to {MAX_SEED}")
    check_text_prompt(cfg.text_prompt)
    if cfg.voice_prompt:
        voice_file(cfg.voices_dir, cfg.voice_prompt)  # a file of the voices folder, nothing else


async def tell(ws: WebSocket, message: str, close_code: int | None = None) -> None:
    """An ERROR message to the client, then close with `close_code` if given."""
    try:
        await ws.send_bytes(ERROR + message.encode())
        if close_code is not None:
            await ws.close(code=close_code)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client is gone: nobody to tell


class ChatSession:
    def __init__(self, service: ChatService, ws: WebSocket, cfg: ChatConfig):
        self.service, self.ws, self.cfg = service, ws, cfg
        # The input buffer: at most max_lag_ms of audio waits for the model; beyond that the oldest is dropped.
        waiting = max(1, int(cfg.max_lag_ms * SAMPLE_RATE / 1000 // FRAME_SIZE))
        self.frames: asyncio.Queue[np.ndarray] = asyncio.Queue(maxsize=waiting)
        self.max_frames = int(cfg.max_session_seconds * FRAME_RATE)
        self.stats = SessionStats()
        self.recording = SessionRecording(self.max_frames) if cfg.record_dir else None
        self.send_meta = ws.query_params.get("meta") == "1"
        self.opus_in, self.opus_out = sphn.OpusStreamReader(SAMPLE_RATE), sphn.OpusStreamWriter(SAMPLE_RATE)
        self._pending = np.zeros(0, np.float32)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        # The client is listened to from the start: one that leaves while the model steps its persona prefix
        # (seconds for a long role text) stops that work, and the model is free for the next client at once.
        receive = asyncio.create_task(self._receive())
        left = threading.Event()  # read by the worker thread between prefix steps
        receive.add_done_callback(lambda _: left.set())
        tasks = {receive}
        try:
            engine = await self._start(left)
            if engine is None:
                return
            respond = asyncio.create_task(self._respond(engine))
            tasks.add(respond)
            done, _ = await asyncio.wait(
                tasks, timeout=self.cfg.max_session_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if not done or (respond in done and respond.exception() is None):
                await tell(self.ws, f"session time limit reached ({self.cfg.max_session_seconds:g} s)", 1000)
            elif respond in done:
                await tell(self.ws, f"the chat engine failed: {respond.exception()}", 1011)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # The model is free once a step still running in the worker is done; the WAV is written off the loop.
            await loop.run_in_executor(self.service.executor, lambda: None)
            if self.recording is not None and self.recording.frames:
                self.service.last_recording = await loop.run_in_executor(
                    None, self.recording.save, Path(self.cfg.record_dir)
                )

    async def _start(self, left: threading.Event) -> "ChatEngine | None":
        """The engine, started for this session, once the handshake is sent; None when it failed (the client is
        told) or the client left."""
        loop = asyncio.get_running_loop()
        try:
            engine = await loop.run_in_executor(None, self.service.load, self.cfg)
            # The persona's system prompt is stepped before the handshake, as PersonaPlex's server does.
            started = await loop.run_in_executor(self.service.executor, engine.start, self.cfg, left.is_set)
        except StudioError as e:
            await tell(self.ws, str(e), 1011)
            return None
        if not started or left.is_set():
            return None
        try:
            await self.ws.send_bytes(HANDSHAKE)
        except (WebSocketDisconnect, RuntimeError):  # the client left just now
            return None
        return engine

    async def _receive(self) -> None:
        """Client messages until it disconnects; audio becomes 80 ms frames in the input buffer."""
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
                await tell(self.ws, str(e))

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
            if self.frames.full():  # the model is behind, or the client ahead of real time
                self.frames.get_nowait()
                self.stats.skipped += 1
            self.frames.put_nowait(self._pending[:FRAME_SIZE])
            self._pending = self._pending[FRAME_SIZE:]

    async def _respond(self, engine: "ChatEngine") -> None:
        """Steps the engine on the buffered frames, at most in real time, until the session's limit."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self.stats.frames < self.max_frames:
            # A client ahead of real time (a flood) does not get the model faster than a microphone would:
            # meanwhile its excess input is dropped from the bounded buffer.
            await asyncio.sleep(start + self.stats.frames * FRAME_SIZE / SAMPLE_RATE - loop.time())
            frame = await self.frames.get()
            out: "FrameOutput" = await loop.run_in_executor(self.service.executor, engine.step, frame)
            self.stats.frames += 1
            self.stats.compute_ms = out.compute_ms
            if self.recording is not None:
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


def workspace_chat_config(ws: Workspace) -> ChatConfig:
    """The studio's default: the newest clean export of the workspace (else the demo LM), with the
    workspace's Mimi, tokenizer and device, recording into raw/ so conversations become dialogues."""
    clean = [
        m for m in model_folders(ws) if "/exports/" in m and lm_kwargs_of(ws.root / m).get("dep_q") == NUM_CODEBOOKS
    ]
    model = ws.root / clean[0] if clean else ws.demo_lm
    return ChatConfig(
        model=str(model),
        mimi=ws.mimi_source,
        tokenizer=str(ws.tokenizer_path),
        device=ws.settings.device,
        record_dir=str(ws.raw),
        voices_dir=str(ws.voices),
    )


def add_chat_route(app: FastAPI, service: ChatService, path: str = "/api/chat") -> None:
    app.add_api_websocket_route(path, service.handle)


@dataclass
class ChatServerConfig(ServeConfig, ChatConfig):
    """The standalone server: the chat settings, and where and for whom it serves (the studio's rules)."""

    port: int = config.option(8998, "port to serve on (moshi.server's default)")
    static: Path | None = config.option(
        None,
        "folder of a built web client (Kyutai's client/dist) to serve at / on "
        "the same origin, as moshi.server --static does",
    )

    def chat(self) -> ChatConfig:
        return ChatConfig(**{f.name: getattr(self, f.name) for f in fields(ChatConfig)})


def standalone_app(service: ChatService, access: Access, static: Path | None = None) -> FastAPI:
    """/api/chat, and at / the web client in `static` (else a status line)."""
    app = FastAPI(title="Moshi Studio chat")
    app.add_middleware(AccessGate, access=access)
    add_chat_route(app, service)
    if static is not None:
        app.mount("/", client_files(static))
        return app

    @app.get("/")
    async def status() -> PlainTextResponse:  # a browser (or a health check) gets an answer, not a 404
        state = "in a conversation" if service.busy else "free"
        return PlainTextResponse(f"Moshi Studio chat server ({state}): moshi clients connect to /api/chat\n")

    return app


def main(argv: list[str] | None = None) -> int:
    args = config.cli_parser(ChatServerConfig, "Serve /api/chat (moshi's protocol) for one model.").parse_args(argv)
    try:
        cfg = config.from_cli(ChatServerConfig, args)
        access = access_of(cfg)  # before the model loads: a setting that cannot serve is told at once
        service = ChatService(cfg.chat())
        app = standalone_app(service, access, cfg.static)
        service.load()
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scheme = "wss" if cfg.ssl_certfile else "ws"
    login = f", {len(access.users)} account(s)" if access.users else ""
    print(
        f"/api/chat ready on {scheme}://{cfg.host}:{cfg.port}/api/chat{login} (python -m moshi.client --host "
        f"{cfg.host} --port {cfg.port})",
        flush=True,
    )
    try:
        serve(app, cfg, access, ws_max_size=MAX_MESSAGE_BYTES)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
