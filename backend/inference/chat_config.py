"""The chat engine's config, torch-free: the studio builds its form and the chat service starts without loading
torch (the engine itself is backend.inference.chat_engine, loaded with the first model)."""

import math
from dataclasses import dataclass
from typing import Literal

from backend.core.config import option
from backend.core.errors import ConfigError
from backend.core.spec import CARD, TEXT_CARD
from backend.core.workspace import VOICES_DIR
from backend.models.source import Dtype

# Bounds of the numeric settings (the sampling ones a client can also send in the query string).
MAX_TEMPERATURE = 2.0  # Kyutai's web client offers 0.2 to 1.2; beyond 2 the samples are noise
MAX_SESSION_SECONDS = 3600.0  # a recording is kept in memory until the conversation ends (~2.7 MB per minute)
MAX_LAG_MS = 10_000.0
BOUNDS = {
    "text_temperature": (0.0, MAX_TEMPERATURE),
    "audio_temperature": (0.0, MAX_TEMPERATURE),
    "text_top_k": (1, TEXT_CARD),
    "audio_top_k": (1, CARD),
    "max_session_seconds": (1.0, MAX_SESSION_SECONDS),
    "max_lag_ms": (0.0, MAX_LAG_MS),
    "queue_seconds": (0.0, MAX_SESSION_SECONDS),
}


@dataclass
class ChatConfig:
    model: str = option(
        "models/demo-lm",
        "Moshi LM: a clean exported model folder (dep_q 8), a model folder or a "
        "hub repo id such as kyutai/moshiko-pytorch-bf16",
    )
    mimi: str = option("models/demo-mimi", "Mimi: a folder, a .safetensors file or a hub repo id")
    tokenizer: str = option(
        "models/tokenizer.model",
        "SentencePiece model of the LM's text stream (for a hub model: empty takes the repo's)",
    )
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where the models run (auto: CUDA when available)")
    dtype: Literal["auto", Dtype] = option(
        "auto", "LM dtype (auto: bfloat16 on CUDA, float32 on CPU; a 7B model on CPU needs bfloat16 to fit in memory)"
    )
    text_temperature: float = option(
        0.7, f"text sampling temperature (0: always the likeliest piece; at most {MAX_TEMPERATURE:g})"
    )
    text_top_k: int = option(25, f"text top-k (1 to {TEXT_CARD})")
    audio_temperature: float = option(
        0.8, f"audio sampling temperature (0: always the likeliest code; at most {MAX_TEMPERATURE:g})"
    )
    audio_top_k: int = option(250, f"audio top-k (1 to {CARD})")
    seed: int = option(42424242, "sampling seed (moshi.server's)")
    max_session_seconds: float = option(
        300.0,
        "a conversation ends after this long (frees the model for others) "
        f"and records at most this much audio (1 to {MAX_SESSION_SECONDS:g})",
    )
    max_lag_ms: float = option(
        240.0,
        f"input waits at most this long for the model (up to {MAX_LAG_MS:g}): "
        "when frames take over 80 ms to compute, or a client sends faster than real time, "
        "the oldest waiting input is dropped, so Moshi stays in real time and memory bounded",
    )
    queue_seconds: float = option(
        3.0,
        "a client that finds the model in a conversation waits up to this long for "
        "it to end (in turn), then is told busy; moshi.server waits without limit. A few "
        f"seconds let a client reconnect right after closing (0 to {MAX_SESSION_SECONDS:g})",
    )
    record_dir: str = option(
        "",
        "write every conversation here as a stereo WAV (left Moshi, right user) + word "
        "transcript, ready for the Data stage; empty: do not record",
    )
    threads: int = option(
        1,
        "torch CPU threads (1 is fastest for small models on CPU, where the loop is mostly "
        "Python overhead; 0: torch's default)",
    )
    text_prompt: str = option(
        "",
        "persona (PersonaPlex): role text stepped through the model before every "
        "conversation (clients may send their own: ?text_prompt=...)",
    )
    voice_prompt: str = option("", "persona: voice prompt, a file name in voices_dir (clients: ?voice_prompt=...)")
    voices_dir: str = option(VOICES_DIR, "folder of the voice prompts clients may choose by file name")

    def __post_init__(self) -> None:
        # NaN, negative or absurd values are refused here, not passed to moshi's sampler (which would sample
        # garbage or fail mid-conversation) or used to size a session's buffers.
        for name, (low, high) in BOUNDS.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise ConfigError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
