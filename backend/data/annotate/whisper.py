"""Whisper with word timestamps, through Hugging Face transformers' ASR pipeline.

Why this route: transformers (< 5) is already a dependency (DeepSpeed needs it), so nothing new is
installed; it loads any Whisper checkpoint from a hub id or a local folder (openai/whisper-*,
kotoba-whisper for Japanese, fine-tuned ones); its pipeline chunks long audio (30 s windows with
overlapping strides) and gives word times from cross-attention (dynamic time warping over the
model's alignment heads). faster-whisper needs CTranslate2 and a converted model, WhisperX adds
pyannote and a wav2vec2 aligner downloaded per language, whisper-timestamped pins openai-whisper and
its own model names: each is more to install and none loads a plain HF folder as it is.

Whisper gives no per-word probability through the pipeline: the confidence is 1 and the caller
multiplies it by the word's channel support. A channel's stretches are decoded packed into 30 s windows, as
faster-whisper's are (packing.py: Whisper reads 30 s whatever the stretch's length).
"""

from importlib.metadata import version
from pathlib import Path

import numpy as np

from backend.core.errors import ConfigError
from backend.data.annotate.engines import Tick, TimedWord, transcribe_each
from backend.data.annotate.packing import pack, unpack

CHUNK_SECONDS = 30.0  # Whisper's window


class WhisperEngine:
    name = "whisper"
    sample_rate = 16_000
    bridge = 2.0  # as faster-whisper's (whisper_ct2.py)

    def __init__(self, model: str, language: str | None = None, device: str = "cpu") -> None:
        from transformers import pipeline

        self.model, self.language = model, language
        try:
            self._pipe = pipeline(
                "automatic-speech-recognition", model=model, device=device, chunk_length_s=CHUNK_SECONDS
            )
        except (OSError, ValueError) as e:
            where = "local folder" if Path(model).exists() else "model id or folder"
            raise ConfigError(f"whisper_model: cannot load Whisper from the {where} {model!r} ({e})") from None

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "model": self.model,
            "language": self.language,
            "version": f"transformers {version('transformers')}",
        }

    def transcribe(self, pieces: list[np.ndarray], tick: Tick | None = None) -> list[list[TimedWord]]:
        windows = pack(pieces, self.sample_rate)
        return unpack(windows, transcribe_each([w.audio for w in windows], self._transcribe_one, tick), len(pieces))

    def _transcribe_one(self, audio: np.ndarray) -> list[TimedWord]:
        duration = len(audio) / self.sample_rate
        kwargs = {"language": self.language, "task": "transcribe"} if self.language else {}
        out = self._pipe(
            {"raw": audio.astype(np.float32), "sampling_rate": self.sample_rate},
            return_timestamps="word",
            generate_kwargs=kwargs,
        )
        words = []
        for chunk in out.get("chunks", []):
            text = chunk["text"].strip()
            start, end = chunk["timestamp"]
            if not text or start is None:
                continue
            start = min(max(0.0, float(start)), duration)
            end = min(max(start, float(end if end is not None else start)), duration)  # the last may lack an end
            words.append(TimedWord(text, start, end, 1.0))
        return words

    def align(self, audio: np.ndarray, words: list[str]) -> list[TimedWord | None]:
        raise ConfigError("Whisper cannot place known words; alignment mode needs --engine pocketsphinx")
