"""A stand-in for the `sounddevice` package (PortAudio), so Kyutai's own `python -m moshi.client` runs
headless: the microphone plays $FAKE_MIC_WAV in real time (then silence), the speaker stores what the
client played into $FAKE_SPEAKER_WAV when its stream closes. Only what moshi.client uses is here."""

import os
import threading
import time
from typing import Any, Callable

import numpy as np
import soundfile as sf


class _Stream:
    """Calls `callback` once per block on a real-time clock, from a thread, like PortAudio does."""

    def __init__(self, samplerate: float, channels: int, blocksize: int, callback: Callable[..., None]) -> None:
        self.samplerate, self.channels, self.blocksize, self.callback = int(samplerate), channels, blocksize, callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "_Stream":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._closed()

    def _run(self) -> None:
        tick = time.monotonic()
        while not self._stop.is_set():
            self._block()
            tick += self.blocksize / self.samplerate
            time.sleep(max(0.0, tick - time.monotonic()))

    def _block(self) -> None:
        raise NotImplementedError

    def _closed(self) -> None:
        pass


class InputStream(_Stream):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        audio, rate = sf.read(os.environ["FAKE_MIC_WAV"], dtype="float32", always_2d=True)
        assert rate == self.samplerate, f"the fake microphone file must be {self.samplerate} Hz"
        self.audio, self.pos = audio[:, : self.channels], 0

    def _block(self) -> None:
        block = np.zeros((self.blocksize, self.channels), np.float32)
        part = self.audio[self.pos : self.pos + self.blocksize]
        block[: len(part)] = part
        self.pos += self.blocksize
        self.callback(block, self.blocksize, None, None)


class OutputStream(_Stream):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.played: list[np.ndarray] = []

    def _block(self) -> None:
        block = np.zeros((self.blocksize, self.channels), np.float32)
        self.callback(block, self.blocksize, None, None)
        self.played.append(block)

    def _closed(self) -> None:
        audio = np.concatenate(self.played) if self.played else np.zeros((0, self.channels), np.float32)
        sf.write(os.environ["FAKE_SPEAKER_WAV"], audio, self.samplerate)
