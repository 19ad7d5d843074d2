"""The chat engine's config, torch-free: the studio builds its form and the chat service starts without loading
torch (the engine itself is backend.inference.chat_engine, loaded with the first model)."""

from dataclasses import dataclass
from typing import Literal

from backend.core.config import option


@dataclass
class ChatConfig:
    model: str = option("models/demo-lm", "Moshi LM: a clean exported model folder (dep_q 8), a model folder or a "
                        "hub repo id such as kyutai/moshiko-pytorch-bf16")
    mimi: str = option("models/demo-mimi", "Mimi: a folder, a .safetensors file or a hub repo id")
    tokenizer: str = option("models/tokenizer.model", "SentencePiece model of the LM's text stream (for a hub "
                            "model: empty takes the repo's)")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where the models run (auto: CUDA when available)")
    text_temperature: float = option(0.7, "text sampling temperature")
    text_top_k: int = option(25, "text top-k")
    audio_temperature: float = option(0.8, "audio sampling temperature")
    audio_top_k: int = option(250, "audio top-k")
    seed: int = option(42424242, "sampling seed (moshi.server's)")
    max_session_seconds: float = option(300.0, "a conversation ends after this long (frees the model for others)")
    max_lag_ms: float = option(240.0, "when input has waited longer than this (frames took over 80 ms to compute), "
                               "the oldest is skipped: Moshi stays in real time instead of drifting behind")
    record_dir: str = option("", "write every conversation here as a stereo WAV (left Moshi, right user) + word "
                             "transcript, ready for the Data stage; empty: do not record")
    host: str = option("127.0.0.1", "standalone server (python -m backend.inference.chat_server): address to bind")
    port: int = option(8998, "standalone server: port (moshi.server's default)")
    threads: int = option(1, "torch CPU threads (1 is fastest for small models on CPU, where the loop is mostly "
                         "Python overhead; 0: torch's default)")
