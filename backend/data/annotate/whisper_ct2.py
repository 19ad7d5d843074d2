"""Whisper through faster-whisper (CTranslate2): int8 on CPU, float16 on CUDA, word timestamps, its VAD filter.

The engine for real recordings: on the SpokenWOZ telephone calls it makes a fraction of pocketsphinx's errors
(README, annotate table). A model is a CTranslate2 conversion (Systran/faster-whisper-base, -small, ...): a
hub id, or a local folder with model.bin, config.json, tokenizer.json and vocabulary.txt. faster-whisper is an
optional dependency (`pip install moshi-studio[faster-whisper]`), imported only when this engine is built.

Words come with Whisper's own probability as confidence (the caller multiplies it by the word's channel
support, crosstalk.py). A channel's stretches are decoded packed into 30 s windows (packing.py), each window
without the previous text as a prompt (a hallucinated phrase cannot carry into the next window); with no
`language` given, it is detected once per channel, on its fullest window, not once per call.
"""

import os
from importlib.metadata import version
from pathlib import Path

import numpy as np

from backend.core.errors import ConfigError, StudioError
from backend.data.annotate.engines import Tick, TimedWord, transcribe_each
from backend.data.annotate.packing import pack, unpack

# faster-whisper's default; beam 1 saved a quarter of the compute for 1.1 points more WER on the SpokenWOZ calls.
BEAM_SIZE = 5


def _device(device: str) -> tuple[str, int, str]:
    """(CTranslate2 device, index, compute type) of a torch-style device name."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"device: faster-whisper runs on cpu or cuda[:N], not {device!r}")
    return kind, int(index or 0), "float16" if kind == "cuda" else "int8"


class FasterWhisperEngine:
    name = "faster-whisper"
    sample_rate = 16_000
    bridge = 2.0  # Whisper needs context: own speech less than 2 s apart is decoded as one stretch

    def __init__(self, model: str, language: str | None = None, device: str = "cpu", vad: bool = True) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ConfigError(
                "engine faster-whisper: the faster-whisper package is not installed "
                "(pip install 'moshi-studio[faster-whisper]')"
            ) from None
        kind, index, self.compute_type = _device(device)
        self.model, self.language, self.vad = model, language, vad
        try:
            self._model = WhisperModel(
                model,
                device=kind,
                device_index=index,
                compute_type=self.compute_type,
                cpu_threads=len(os.sched_getaffinity(0)),
            )  # its default of 4 spins on 2 cores
        except (OSError, RuntimeError, ValueError) as e:
            where = "local folder" if Path(model).exists() else "model id or folder"
            raise ConfigError(
                f"whisper_model: cannot load a CTranslate2 Whisper from the {where} {model!r} ({e})"
            ) from None

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "model": self.model,
            "language": self.language,
            "vad_filter": self.vad,
            "compute_type": self.compute_type,
            "version": f"faster-whisper {version('faster-whisper')}",
        }

    def transcribe(self, pieces: list[np.ndarray], tick: Tick | None = None) -> list[list[TimedWord]]:
        windows = pack(pieces, self.sample_rate)
        if not windows:
            return [[] for _ in pieces]
        language = self.language or self._detect_language(max((w.audio for w in windows), key=len))
        found = transcribe_each([w.audio for w in windows], lambda audio: self._transcribe_one(audio, language), tick)
        return unpack(windows, found, len(pieces))

    def _detect_language(self, audio: np.ndarray) -> str:
        if not self._model.model.is_multilingual:
            return "en"
        try:
            return self._model.detect_language(audio, vad_filter=self.vad)[0]
        except (RuntimeError, ValueError) as e:
            raise StudioError(f"faster-whisper could not detect the language ({e})") from None

    def _transcribe_one(self, audio: np.ndarray, language: str) -> list[TimedWord]:
        duration = len(audio) / self.sample_rate
        try:
            segments, _ = self._model.transcribe(
                audio.astype(np.float32),
                language=language,
                beam_size=BEAM_SIZE,
                word_timestamps=True,
                vad_filter=self.vad,
                condition_on_previous_text=False,
            )
            words = [w for s in segments for w in s.words or ()]  # the generator decodes as it is read
        except (RuntimeError, ValueError) as e:
            raise StudioError(f"faster-whisper could not decode the audio ({e})") from None
        return [
            TimedWord(
                w.word.strip(),
                min(max(0.0, w.start), duration),
                min(max(w.start, w.end), duration),
                float(w.probability),
            )
            for w in words
            if w.word.strip()
        ]

    def align(self, audio: np.ndarray, words: list[str]) -> list[TimedWord | None]:
        raise ConfigError("faster-whisper cannot place known words; alignment needs --engine pocketsphinx")
