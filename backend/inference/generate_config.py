"""The continuations stage's config and output file names, torch-free: the studio builds its form and reads
the results without loading torch (the stage itself is backend.inference.generate)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.core.config import option
from backend.core.errors import InputError
from backend.core.workspace import CONTINUATIONS_DIR
from backend.models.source import Dtype


@dataclass
class GenerateConfig:
    model: str = option(
        "models/demo-lm-init",
        "model folder, training checkpoint (runs/<id>/checkpoints/step-N, full or LoRA) or hub repo id",
    )
    base_model: str = option("", "LoRA checkpoints: the base model (default: base_model of the checkpoint's run)")
    dataset: Path = option(
        Path("dataset"), "Parquet dataset (folder of shards or one .parquet file) holding the reference dialogues"
    )
    dialogues: list[str] = option([], "dialogue ids to continue (empty: the dataset's first `limit`, or all)")
    limit: int = option(0, "without dialogue ids: continue the first N dialogues of the dataset (0: all)", ge=0)
    main_speaker: Literal["A", "B"] = option(
        "A", "speaker of the dataset that plays Moshi (left channel); the other is the user (right channel)"
    )
    start_frame: int = option(0, "first frame of the prompt in the dialogue (12.5 Hz frames)", ge=0)
    prompt_frames: int = option(50, "teacher-forced prompt length P in frames (50 = 4 s)", ge=1)
    gen_frames: int = option(
        125,
        "frames G to generate after the prompt (125 = 10 s); with a dep_q 8 model at "
        "most what the reference has left (its user stream is read from it)",
        ge=1,
    )
    text_temperature: float = option(0.7, "text sampling temperature (0: greedy)", ge=0)
    text_top_k: int = option(25, "text top-k (0: whole vocabulary)", ge=0)
    audio_temperature: float = option(0.8, "audio sampling temperature (0: greedy)", ge=0)
    audio_top_k: int = option(250, "audio top-k (0: all 2048 entries)", ge=0)
    seed: int = option(0, "sampling seed; each dialogue's generator is seeded from it and the dialogue id")
    batch_size: int = option(4, "dialogues generated together", ge=1)
    device: Literal["auto", "cpu", "cuda"] = option("auto", "where the LM runs (auto: CUDA when available)")
    dtype: Literal["auto", Dtype] = option("auto", "LM dtype (auto: bfloat16 on CUDA, float32 on CPU)")
    cuda_graphs: bool = option(True, "CUDA only: replay each step as a CUDA graph (faster; ignored on CPU)")
    output: Path | None = option(
        Path(CONTINUATIONS_DIR),
        "folder for <dialogue id>.npz (+ .continuation.wav, "
        ".reference.wav, .spectrogram.png, .transcript.json); "
        "none: keep results in memory only",
    )
    mimi: str = option(
        "",
        "Mimi to decode with (folder, .safetensors or hub id): writes <id>.continuation.wav, "
        "<id>.reference.wav and <id>.spectrogram.png; empty: tokens only",
    )
    tokenizer: str = option("", "SentencePiece model: writes <id>.transcript.json (timed words of Moshi's text)")
    text_prompt: str = option("", "persona (PersonaPlex): role text put before every prompt (needs tokenizer)")
    voice_prompt: str = option(
        "",
        "persona: voice prompt put before every prompt: an audio file (needs mimi) or a PersonaPlex voice preset (.pt)",
    )
    dataset_personas: bool = option(
        True,
        "without text_prompt/voice_prompt: each dialogue's stored persona "
        "(the dataset's personas.json) goes before its prompt, as in training",
    )


# What the Continuations tab starts with: a 4 s prompt, 6 s generated. In a demo workspace it decodes greedily:
# the demo preset's model memorises the demo dialogues, and only greedy decoding replays all three word for
# word (sampled, one in three did); bench/bench_demo_payoff.py measures exactly these settings.
PAGE_PROMPT_S, PAGE_GENERATE_S = 4.0, 6.0
DEMO_SAMPLING = {"text_temperature": 0.0, "audio_temperature": 0.0}


def page_sampling(demo: bool) -> dict[str, float]:
    """The sampling settings the Continuations tab starts with (the rest are GenerateConfig's defaults)."""
    return dict(DEMO_SAMPLING) if demo else {}


# The files of one continuation: <output>/<dialogue id><suffix> (ids are `<prefix>/<name>`: one
# sub-folder per prefix).
SUFFIXES = {
    "tokens": ".npz",
    "wav": ".continuation.wav",
    "reference_wav": ".reference.wav",
    "spectrogram": ".spectrogram.png",
    "transcript": ".transcript.json",
}


DONE_FILE = "generate_config.json"  # written into the output folder last: every continuation's files are there


def output_files(output: Path, dialogue_id: str) -> dict[str, Path]:
    if Path(dialogue_id).is_absolute() or ".." in Path(dialogue_id).parts or not dialogue_id.strip():
        raise InputError(output, f"dialogue id {dialogue_id!r} cannot name a file inside the output folder")
    stem = output / dialogue_id
    return {key: stem.with_name(stem.name + suffix) for key, suffix in SUFFIXES.items()}
