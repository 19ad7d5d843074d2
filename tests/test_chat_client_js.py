"""assets/studio/chat_client.js in a real chromium, against a tiny server speaking moshi's chat protocol.

The browser's microphone plays a WAV made here (a 660 Hz tone in syllable-like bursts); the server
(aiohttp, like moshi.server) decodes what the page sends with sphn and answers with a 440 Hz tone,
text pieces and stats. Ogg pages the page wrote are checked here independently (CRC, sequence,
granule positions): sphn itself accepts pages with a wrong CRC.
"""

import asyncio
import json
import threading
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import pytest
from conftest import REPO, free_port

pytestmark = pytest.mark.browser

aiohttp_web = pytest.importorskip("aiohttp.web", reason="aiohttp (a moshi dependency) is not installed")
sphn = pytest.importorskip("sphn", reason="sphn (a moshi dependency) is not installed")

CHAT_JS = REPO / "assets" / "studio" / "chat_client.js"
RATE = 24000  # moshi's side of the wire
FRAME = 1920  # 80 ms
MIC_HZ = 660.0
SERVER_HZ = 440.0
PIECES = [" hello", " there", " héllo", " 日本"]  # non-ASCII: the page must decode UTF-8


# ---------------------------------------------------------------- Ogg, checked without the page's code


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


CRC_TABLE = _crc_table()


def ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC_TABLE[(crc >> 24) ^ byte]
    return crc


class OggPage(NamedTuple):
    flags: int
    granule: int
    serial: int
    sequence: int
    packets: list[bytes]  # packets that end on this page (none here spans pages)


def ogg_pages(data: bytes) -> list[OggPage]:
    """Every page of `data`; ValueError names the first page that is malformed or fails its CRC."""
    pages, pos = [], 0
    while pos < len(data):
        if data[pos : pos + 5] != b"OggS\x00":
            raise ValueError(f"byte {pos}: no Ogg page starts here")
        segments = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + segments]
        size = 27 + segments + sum(lacing)
        page = bytearray(data[pos : pos + size])
        if len(page) < size:
            raise ValueError(f"byte {pos}: page cut short ({len(page)} of {size} bytes)")
        crc = int.from_bytes(page[22:26], "little")
        page[22:26] = b"\0\0\0\0"
        sequence = int.from_bytes(page[18:22], "little")
        if ogg_crc(bytes(page)) != crc:
            raise ValueError(f"page {sequence}: CRC mismatch")
        packets, at, current = [], 27 + segments, b""
        for length in lacing:
            current += bytes(page[at : at + length])
            at += length
            if length < 255:
                packets.append(current)
                current = b""
        pages.append(
            OggPage(
                page[5],
                int.from_bytes(page[6:14], "little", signed=True),
                int.from_bytes(page[14:18], "little"),
                sequence,
                packets,
            )
        )
        pos += size
    return pages


# ---------------------------------------------------------------- audio


def tone(hz: float, start: int, count: int, rate: int = RATE) -> np.ndarray:
    t = np.arange(start, start + count) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def band_share(pcm: np.ndarray, hz: float, rate: int = RATE) -> tuple[float, float]:
    """(dominant frequency, share of the energy within 30 Hz of `hz`)."""
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm)))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    near = np.abs(freqs - hz) <= 30
    return float(freqs[np.argmax(spectrum)]), float(spectrum[near].sum() / spectrum.sum())


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 48 kHz, 16-bit mono: 660 Hz in 250 ms bursts with soft edges and 150 ms gaps (a steady
    tone would be learned as noise and removed by the browser's noise suppression)."""
    rate = 48000
    t = np.arange(2 * rate) / rate
    phase = (t % 0.4) / 0.25
    envelope = np.where(phase < 1, np.sin(np.pi * np.clip(phase, 0, 1)) ** 0.5, 0.0)
    pcm = (0.5 * envelope * np.sin(2 * np.pi * MIC_HZ * t) * 32767).astype("<i2")
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


# ---------------------------------------------------------------- the server


@dataclass
class Session:
    messages: list[bytes] = field(default_factory=list)  # every 0x01 payload, as received
    pcm: list[np.ndarray] = field(default_factory=list)  # sphn's decoding of them, 24 kHz
    unexpected: list[bytes] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)


PAGE = """<!doctype html><meta charset="utf-8"><body>
<script src="/chat_client.js"></script>
<script>window.firstMoshiChat = window.MoshiChat;</script>
<script src="/chat_client.js"></script>
<script>
// As gr.HTML(js_on_load=...) runs it: the file's text as the body of a function of `element`.
fetch("/chat_client.js").then((r) => r.text()).then((js) => {
  new Function("element", js)(document.body);
  window.loaded = window.MoshiChat === window.firstMoshiChat;
});
</script>"""


async def talk(ws: Any) -> None:
    """Moshi's side, paced in real time: 80 ms of 440 Hz per frame, a text piece every 4 frames,
    stats every 10; every third frame's Ogg bytes arrive cut in two messages."""
    writer = sphn.OpusStreamWriter(RATE)
    loop = asyncio.get_running_loop()
    start = loop.time()
    frame = 0
    try:
        await ws.send_bytes(b"\x06")  # a kind the page does not know (another server's ping)
        while not ws.closed:
            ogg = writer.append_pcm(tone(SERVER_HZ, frame * FRAME, FRAME))
            cut = len(ogg) // 2 if frame % 3 == 2 else len(ogg)
            for part in (ogg[:cut], ogg[cut:]):
                if part:
                    await ws.send_bytes(b"\x01" + part)
            if frame % 4 == 1:
                await ws.send_bytes(b"\x02" + PIECES[frame // 4 % len(PIECES)].encode())
            if frame % 10 == 0:
                meta = {"compute_ms": 41.2, "rtf": 0.52, "skipped": 0, "frames": frame}
                await ws.send_bytes(b"\x04" + json.dumps(meta).encode())
            frame += 1
            await asyncio.sleep(max(0.0, start + frame * FRAME / RATE - loop.time()))
    except ConnectionError:  # the page went away mid-send
        pass


class ChatServer:
    """An aiohttp app on its own thread: `/` the test page, `/api/chat` a chat, `/api/busy` a refusal,
    `/api/silent` a server that never sends its handshake."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sessions: list[Session] = []
        app = aiohttp_web.Application()
        app.router.add_get("/", self.page)
        app.router.add_get("/chat_client.js", self.script)
        app.router.add_get("/api/chat", self.chat)
        app.router.add_get("/api/busy", self.busy)
        app.router.add_get("/api/silent", self.silent)
        self.silent_closed = threading.Event()
        self.runner = aiohttp_web.AppRunner(app)
        # Its own loop on its own thread (Playwright's sync API keeps a loop running on this one).
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self.serve, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"test chat server did not start on port {self.port}")

    def serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(aiohttp_web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def page(self, request: Any) -> Any:
        return aiohttp_web.Response(text=PAGE, content_type="text/html")

    async def script(self, request: Any) -> Any:
        return aiohttp_web.FileResponse(CHAT_JS)

    async def chat(self, request: Any) -> Any:
        ws = aiohttp_web.WebSocketResponse()
        await ws.prepare(request)
        session = Session()
        self.sessions.append(session)
        reader = sphn.OpusStreamReader(RATE)
        await ws.send_bytes(b"\x00")
        talker = asyncio.create_task(talk(ws))
        try:
            async for message in ws:
                data = message.data
                if not isinstance(data, bytes) or data[:1] != b"\x01":
                    session.unexpected.append(data if isinstance(data, bytes) else str(data).encode())
                    continue
                session.messages.append(data[1:])
                session.pcm.append(reader.append_bytes(data[1:]))
        finally:
            talker.cancel()
            session.closed.set()
        return ws

    async def busy(self, request: Any) -> Any:
        """Garbage stats, one corrupt audio page, then moshi-style refusal (0x05) and close."""
        ws = aiohttp_web.WebSocketResponse()
        await ws.prepare(request)
        ogg = sphn.OpusStreamWriter(RATE).append_pcm(tone(SERVER_HZ, 0, FRAME))
        corrupt = bytearray(ogg)
        corrupt[-1] ^= 0xFF  # the last page's payload
        await ws.send_bytes(b"\x04{not json")
        await ws.send_bytes(b"\x01" + bytes(corrupt))
        await ws.send_bytes(b"\x05busy: another chat is running")
        await ws.close()
        return ws

    async def silent(self, request: Any) -> Any:
        ws = aiohttp_web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:  # until the page closes
            pass
        self.silent_closed.set()
        return ws


@pytest.fixture(scope="module")
def server() -> Iterator[ChatServer]:
    s = ChatServer()
    yield s
    s.close()


@pytest.fixture
def page(fake_mic_browser: Callable[[Path], Any], mic_wav: Path, server: ChatServer) -> Iterator[Any]:
    page = fake_mic_browser(mic_wav).new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(server.url)
    page.wait_for_function("window.loaded !== undefined")
    yield page
    page.close()


def new_chat(page: Any, url: str) -> None:
    """window.chat, a MoshiChat whose callbacks log into window.log."""
    page.evaluate(
        """(url) => {
      window.log = {text: [], meta: [], states: [], errors: []};
      window.chat = new window.MoshiChat({
        url,
        onText: (t) => window.log.text.push(t),
        onMeta: (m) => window.log.meta.push(m),
        onState: (s) => window.log.states.push(s),
        onError: (e) => window.log.errors.push(e),
      });
    }""",
        url,
    )


def ws_url(server: ChatServer, path: str) -> str:
    return server.url.replace("http", "ws") + path


# ---------------------------------------------------------------- tests


def test_ogg_checker_catches_a_flipped_byte() -> None:
    """The checker used below accepts sphn's own (valid) stream and rejects it with one byte flipped."""
    writer = sphn.OpusStreamWriter(RATE)
    ogg = b"".join(writer.append_pcm(tone(SERVER_HZ, i * FRAME, FRAME)) for i in range(3))
    pages = ogg_pages(ogg)
    assert pages[0].packets[0].startswith(b"OpusHead") and pages[1].packets[0].startswith(b"OpusTags")
    bad = bytearray(ogg)
    bad[-3] ^= 0x10
    with pytest.raises(ValueError, match=f"page {pages[-1].sequence}: CRC mismatch"):
        ogg_pages(bytes(bad))


@pytest.mark.parametrize("capture", ["track-processor", "audio-worklet"])
def test_full_duplex_chat(page: Any, server: ChatServer, capture: str) -> None:
    """Both microphone paths: MediaStreamTrackProcessor (Chromium) and the AudioWorklet fallback."""
    assert page.evaluate("window.loaded"), "loading chat_client.js again replaced window.MoshiChat"
    if capture == "audio-worklet":
        page.evaluate("delete window.MediaStreamTrackProcessor")
    new_chat(page, ws_url(server, "/api/chat"))
    assert page.evaluate("window.chat.start()") is True
    session = server.sessions[-1]
    page.wait_for_function("window.chat.stats().sentSeconds >= 5.2", timeout=20000, polling=200)
    live = page.evaluate("window.chat.stats()")
    log = page.evaluate("window.log")
    page.evaluate("window.chat.stop(); window.chat.stop()")  # idempotent
    assert session.closed.wait(5), "the server did not see the page disconnect after stop()"
    after = page.evaluate("window.chat.stats()")

    # The server got >= 5 s of the microphone, and it is the microphone: 660 Hz bursts.
    pcm = np.concatenate(session.pcm)
    assert len(pcm) >= 5 * RATE, f"server decoded only {len(pcm) / RATE:.2f} s"
    body = pcm[RATE // 2 :]  # the encoder's and the noise suppressor's start-up
    peak, share = band_share(body, MIC_HZ)
    assert abs(peak - MIC_HZ) < 10 and share > 0.5, (peak, share)
    frames = body[: len(body) // 480 * 480].reshape(-1, 480)  # 20 ms
    loud = np.sqrt((frames**2).mean(axis=1)) > 0.02
    assert 0.4 < loud.mean() < 0.85, f"bursts and gaps lost: {loud.mean():.2f} of 20 ms frames loud"

    # The page's Ogg stream, checked page by page: one page per websocket message, valid CRCs,
    # headers first, one serial, consecutive sequence numbers, 20 ms packets, 48 kHz granules.
    pages = [ogg_pages(m) for m in session.messages]
    assert all(len(p) == 1 for p in pages), "a message held more or less than one page"
    pages_flat = [p[0] for p in pages]
    head, tags, audio = pages_flat[0], pages_flat[1], pages_flat[2:]
    assert head.flags == 0x02 and head.packets[0].startswith(b"OpusHead") and head.granule == 0
    assert tags.flags == 0 and tags.packets[0].startswith(b"OpusTags") and tags.granule == 0
    assert {p.serial for p in pages_flat} == {head.serial}
    assert [p.sequence for p in pages_flat] == list(range(len(pages_flat)))
    assert all(p.flags == 0 and len(p.packets) == 1 for p in audio)
    granules = [0] + [p.granule for p in audio]
    assert set(np.diff(granules)) == {960}, "audio pages should each carry one 20 ms packet"
    assert abs(granules[-1] / 48000 - len(pcm) / RATE) < 0.01
    assert not session.unexpected
    assert abs(live["sentSeconds"] - granules[-1] / 48000) < 0.1

    # The page decoded and scheduled the server's audio, got its text and stats.
    assert live["state"] == "live" and log["states"] == ["connecting", "waiting", "live"]
    assert live["receivedSeconds"] >= 4.0, live
    assert 0 < live["bufferedMs"] < 600, live
    assert live["textPieces"] == len(log["text"]) >= 10
    assert log["text"][:4] == PIECES
    assert log["meta"] and log["meta"][0] == {"compute_ms": 41.2, "rtf": 0.52, "skipped": 0, "frames": 0}
    assert [m["frames"] for m in log["meta"]][:3] == [0, 10, 20]
    assert log["errors"] == [] and page.errors == []
    assert after["state"] == "closed" and after["bufferedMs"] == 0
    assert page.evaluate("window.log.states.slice(-1)[0]") == "closed"


def test_refusal_and_bad_input_are_reported(page: Any, server: ChatServer) -> None:
    """A busy server, garbage from it, and no server at all: readable onError messages, start() -> false."""
    new_chat(page, ws_url(server, "/api/busy"))
    assert page.evaluate("window.chat.start()") is False
    errors = page.evaluate("window.log.errors")
    assert any("unreadable stats message" in e for e in errors), errors
    assert any("corrupt Ogg page 3" in e and "CRC" in e for e in errors), errors
    assert "server: busy: another chat is running" in errors, errors
    assert errors[-1].startswith("connection closed by the server"), errors
    assert page.evaluate("window.chat.stats().state") == "closed"
    page.evaluate("window.chat.stop()")

    new_chat(page, f"ws://127.0.0.1:{free_port()}/api/chat")
    assert page.evaluate("window.chat.start()") is False
    errors = page.evaluate("window.log.errors")
    assert len(errors) == 1 and errors[0].startswith("cannot start the chat: cannot connect to ws://"), errors
    assert page.evaluate("window.log.states") == ["connecting", "closed"]
    assert page.errors == []


def test_stop_while_waiting_for_the_handshake(page: Any, server: ChatServer) -> None:
    """A server that never gets ready: stop() ends start() (false), quietly, and the server sees it;
    stop() before the microphone arrives releases it too."""
    new_chat(page, ws_url(server, "/api/silent"))
    started = page.evaluate("""async () => {
      const started = window.chat.start();
      while (window.chat.stats().state !== "waiting") await new Promise((r) => setTimeout(r, 20));
      window.chat.stop();
      return await started;
    }""")
    assert started is False
    assert server.silent_closed.wait(5), "the server did not see the page disconnect"
    assert page.evaluate("window.log") == {
        "text": [],
        "meta": [],
        "errors": [],
        "states": ["connecting", "waiting", "closed"],
    }

    # stop() while the microphone permission is pending: the stream that arrives later is released.
    new_chat(page, ws_url(server, "/api/silent"))
    started, mic = page.evaluate("""async () => {
      const started = window.chat.start();
      window.chat.stop();
      return [await started, window.chat.stream.getAudioTracks()[0].readyState];
    }""")
    assert (started, mic) == (False, "ended")
    assert page.evaluate("window.log.states") == ["connecting", "closed"]
    assert page.errors == []
