"""Persona prompts, token for token as NVIDIA's PersonaPlex (nvidia/personaplex-7b-v1) builds them: the one
prefix builder that data, training, continuations and chat all use.

Before the conversation PersonaPlex steps a *system prompt* through the LM (its `LMGen.step_system_prompts`),
all tokens provided, none sampled. Rows: 0 text, 1-8 Moshi's codebooks, 9-16 the user's; undelayed here, the
model's own delays are applied by whoever feeds them (training_view.delayed_input, LMGen's cache):

    phase      frames                      text                  Moshi 1-8             user 9-16
    voice      ceil(samples / 1920)        PAD (3)               Mimi codes of voice   SINE_CODES
    silence    SILENCE_FRAMES (6, 0.5 s)   PAD                   SILENCE_CODES         SINE_CODES
    role text  one per token               ids of wrap(text)     SILENCE_CODES         SINE_CODES
    silence    SILENCE_FRAMES              PAD                   SILENCE_CODES         SINE_CODES

The voice wav is read (first channel), resampled to 24 kHz with sphn (PersonaPlex's own resampler), normalised
to -24 LUFS (ITU-R BS.1770 integrated loudness, pyloudnorm, as PersonaPlex), cut into 1920-sample frames (the last
zero-padded) and encoded by streaming Mimi, reset before and after.

Quirks of PersonaPlex and what the studio does (README "Persona prompts"):
- PersonaPlex's step loop overwrites the cache column of the very first step with the initial tokens (all rows)
  and, one step later, the first frame's acoustic codebooks too: frame 0 never reaches the LM. `lm_rows` drops it
  in the one place that decides what the LM sees, so training and inference agree with PersonaPlex.
- PersonaPlex counts a role text as absent only when it is the empty string (`len(text) > 0` in its server and
  offline runner): whitespace is wrapped and fed like any text (`has_role_text`). An empty role text crashes
  PersonaPlex's server (its `_step_text_prompt_core` iterates None); here it gives a role phase of zero frames.
  No voice prompt likewise gives a voice phase of zero frames.
"""

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.core.errors import ConfigError, InputError
from backend.core.spec import FRAME_SIZE, NUM_CODEBOOKS, PAD_ID, SAMPLE_RATE

MAX_TEXT_PROMPT = 4000  # characters of role text a client may send (PersonaPlex's presets are a few hundred)
MAX_VOICE_NAME = 255


def voice_file(voices_dir: str | Path, name: str, param: str = "voice_prompt") -> Path:
    """The file `name` directly inside `voices_dir`: a plain file name (no folders, no `..`, not absolute), that
    exists, and whose real path stays inside the folder (a symlink out is refused). Errors name `param`."""
    if (
        not name
        or len(name) > MAX_VOICE_NAME
        or "\x00" in name
        or name in (".", "..")
        or os.path.basename(name) != name
        or "/" in name
        or "\\" in name
    ):
        raise ConfigError(f"{param}: {name[:80]!r} is not a file name in the voices folder")
    folder = Path(voices_dir).resolve()
    path = folder / name
    if not path.resolve().is_relative_to(folder) or not path.resolve().is_file():
        raise ConfigError(f"{param}: no voice prompt {name!r} in the voices folder")
    return path.resolve()


def check_text_prompt(text: str, param: str = "text_prompt") -> str:
    if len(text) > MAX_TEXT_PROMPT:
        raise ConfigError(f"{param}: at most {MAX_TEXT_PROMPT} characters of text, got {len(text)}")
    if "\x00" in text:
        raise ConfigError(f"{param}: holds a NUL character (\\x00) at character {text.index(chr(0))}; remove it")
    return text


# Mimi codes of an all-zero frame and of PersonaPlex's 0.5-amplitude 440 Hz frame (the user's stream during the
# prompt), as PersonaPlex hard-codes them: they belong to the real Mimi, so a tiny test Mimi uses them too.
SILENCE_CODES = (948, 243, 1178, 546, 1736, 1030, 1978, 2008)
SINE_CODES = (430, 1268, 381, 1611, 1095, 1495, 56, 472)
SILENCE_FRAMES = 6  # int(0.5 s * 12.5 Hz), after the voice and after the role text
TARGET_LUFS = -24.0
SYSTEM_TAG = "<system>"
FIRST_FED_FRAME = 1  # PersonaPlex never feeds frame 0 of its prompt to the LM (see the module docstring)
MIN_VOICE_SECONDS = 0.4  # BS.1770 gating blocks are 400 ms: shorter audio has no integrated loudness
ROWS = 1 + 2 * NUM_CODEBOOKS


@dataclass(frozen=True)
class Persona:
    """A persona ready to build a prefix: the role text as given, its token ids (of `wrap_role_text`, with the
    LM's tokenizer) and the voice prompt's Mimi codes int64 [8, F] (F may be 0); from a voice preset, the
    embeddings that replace the LM's first F - 1 inputs (those codes are then ZERO_TOKEN)."""

    text: str
    text_ids: tuple[int, ...]
    voice: np.ndarray
    voice_embeddings: Any = None  # a PersonaPlex voice preset's transformer inputs [F - 1, dim] (voice_preset.py)

    def rows(self) -> np.ndarray:
        return lm_rows(build_prefix(self.voice, self.text_ids))


def wrap_role_text(text: str) -> str:
    """PersonaPlex's role text: stripped, between system tags unless it already starts and ends with one."""
    cleaned = text.strip()
    if cleaned.startswith(SYSTEM_TAG) and cleaned.endswith(SYSTEM_TAG):
        return cleaned
    return f"{SYSTEM_TAG} {cleaned} {SYSTEM_TAG}"


def has_role_text(text: str) -> bool:
    """PersonaPlex's test for a role text: any string but the empty one (whitespace only is wrapped and fed)."""
    return len(text) > 0


def role_text_ids(sp: Any, text: str) -> list[int]:
    """Ids of the wrapped role text (SentencePiece plain encode: no BOS/EOS); [] for an empty role text."""
    if not has_role_text(text):
        return []
    return [int(i) for i in sp.encode(wrap_role_text(text))]


def build_prefix(voice: np.ndarray | None, text_ids: Sequence[int]) -> np.ndarray:
    """The whole system prompt, int64 [17, P] undelayed, P = F + 6 + len(text_ids) + 6 (module docstring)."""
    codes = np.zeros((NUM_CODEBOOKS, 0), dtype=np.int64) if voice is None else np.asarray(voice, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[0] != NUM_CODEBOOKS:
        raise ValueError(f"voice codes must be [{NUM_CODEBOOKS}, F], got {list(codes.shape)}")
    n_voice, n_text = codes.shape[1], len(text_ids)
    total = n_voice + 2 * SILENCE_FRAMES + n_text
    out = np.empty((ROWS, total), dtype=np.int64)
    out[0] = PAD_ID
    out[0, n_voice + SILENCE_FRAMES : n_voice + SILENCE_FRAMES + n_text] = np.asarray(text_ids, dtype=np.int64)
    out[1 : 1 + NUM_CODEBOOKS, :n_voice] = codes
    out[1 : 1 + NUM_CODEBOOKS, n_voice:] = np.asarray(SILENCE_CODES, dtype=np.int64)[:, None]
    out[1 + NUM_CODEBOOKS :] = np.asarray(SINE_CODES, dtype=np.int64)[:, None]
    return out


def lm_rows(prefix: np.ndarray) -> np.ndarray:
    """What of the prefix the LM sees in PersonaPlex: all but frame 0 (its step loop never feeds it)."""
    return prefix[:, FIRST_FED_FRAME:]


# ---------------------------------------------------------------- the voice prompt


def read_voice(path: str | Path) -> np.ndarray:
    """float32 [N] at 24 kHz: the first channel of an audio file, resampled with sphn as PersonaPlex does."""
    import sphn

    from backend.models.voice_preset import is_preset

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such voice prompt file")
    if is_preset(path):
        raise InputError(
            path,
            "a PersonaPlex voice preset holds the LM's input embeddings, not audio: it serves "
            "continuations and chat only; personas for training need the voice as audio",
        )
    try:
        pcm, sr = sphn.read(str(path))
    except Exception as e:  # sphn raises plain exceptions for unreadable files
        raise InputError(path, f"not a readable audio file ({e})") from None
    if pcm.ndim != 2 or pcm.shape[1] == 0:
        raise InputError(path, "holds no audio")
    if sr != SAMPLE_RATE:
        pcm = sphn.resample(pcm, src_sample_rate=sr, dst_sample_rate=SAMPLE_RATE)
    return np.ascontiguousarray(pcm[0], dtype=np.float32)


def normalise_loudness(wav: np.ndarray, where: str | Path = "voice prompt") -> np.ndarray:
    """The mono 24 kHz wav scaled to -24 LUFS integrated loudness (pyloudnorm's BS.1770-4 meter, as PersonaPlex:
    its gating and K-weighting decide the gain, so the same library on the same float32 samples gives the same
    gain; PersonaPlex hands sphn's float32 array to the meter as it is)."""
    import pyloudnorm

    if len(wav) < MIN_VOICE_SECONDS * SAMPLE_RATE:
        raise InputError(
            where,
            f"{len(wav) / SAMPLE_RATE:.2f} s long: a voice prompt needs at least "
            f"{MIN_VOICE_SECONDS} s to measure its loudness",
        )
    if not np.isfinite(wav).all():
        raise InputError(where, "holds NaN or Inf samples")
    samples = np.asarray(wav, dtype=np.float32)
    loudness = pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(samples)
    if not np.isfinite(loudness):
        raise InputError(where, "is silent: a voice prompt needs audible speech")
    return pyloudnorm.normalize.loudness(samples, loudness, TARGET_LUFS)


def encode_voice(mimi: Any, wav: np.ndarray, where: str | Path = "voice prompt") -> np.ndarray:
    """int64 [8, ceil(N / 1920)]: the normalised wav encoded frame by frame by streaming Mimi, whose state is
    fresh for the first frame and reset after the last (PersonaPlex resets it around the prompt)."""
    import torch

    audio = normalise_loudness(wav, where)
    frames = -(-len(audio) // FRAME_SIZE)
    padded = np.zeros(frames * FRAME_SIZE, dtype=np.float32)
    padded[: len(audio)] = audio
    device = next(mimi.parameters()).device
    chunks = torch.from_numpy(padded).to(device).view(frames, 1, 1, FRAME_SIZE)

    def run() -> list[torch.Tensor]:
        return [mimi.encode(chunk)[0, :NUM_CODEBOOKS] for chunk in chunks]

    with torch.no_grad():
        if mimi.is_streaming:  # a chat engine's Mimi streams forever: reset around the prompt
            mimi.reset_streaming()
            codes = run()
            mimi.reset_streaming()
        else:
            with mimi.streaming(1):
                codes = run()
    return torch.cat(codes, dim=-1).cpu().numpy().astype(np.int64)


def voice_codes(mimi: Any, path: str | Path) -> np.ndarray:
    return encode_voice(mimi, read_voice(path), path)


def make_persona(text: str, sp: Any | None, voice: np.ndarray | None, voice_embeddings: Any = None) -> Persona:
    """A Persona from role text (encoded with `sp`, needed only when the text is not empty) and voice codes
    (with a voice preset's embeddings, voice_preset.py)."""
    if has_role_text(text) and sp is None:
        raise InputError(None, "a role text needs the LM's SentencePiece tokenizer")
    codes = np.zeros((NUM_CODEBOOKS, 0), dtype=np.int64) if voice is None else np.asarray(voice, dtype=np.int64)
    return Persona(text=text, text_ids=tuple(role_text_ids(sp, text)), voice=codes, voice_embeddings=voice_embeddings)


# ---------------------------------------------------------------- stepping a prefix through moshi's LMGen


def step_prefix(
    lm_gen: Any, rows: np.ndarray, embeddings: Any = None, stop: Callable[[], bool] = lambda: False
) -> np.ndarray | None:
    """Feed `rows` ([17, M] from `lm_rows`, M >= 2) to a fresh moshi `LMGen` (batch 1, dep_q 8) with every token
    provided: afterwards its KV cache and token cache are those of the model having read
    `training_view.delayed_input(rows)` up to its last column, the state the conversation starts from.

    moshi's LMGen samples the text and cannot be told a token, so the text is written into its token cache
    after each step and the audio goes in through `depformer_replace_tokens` (no depformer run). The user's
    codes of frame s - 1 go in at step s (LMGen reads a user frame in the step it is given).
    Returns the last frame's acoustic codes (codebooks 1..7): pass them to `finish_prefix` after the first
    conversation step, which is where LMGen would otherwise sample them.
    `embeddings` (a voice preset's, [n, dim]) are the transformer's inputs of the first n steps instead. Returns
    None, the state half stepped, when `stop()` is true before a step (a chat client that left: a long role text
    takes seconds)."""
    import torch

    from backend.core.spec import DELAYS
    from backend.models.voice_preset import check_fits, forward_embedding

    if rows.shape[0] != ROWS or rows.shape[1] < 2 or max(DELAYS) != 1:
        raise ValueError(f"expected [17, >= 2] rows with delays of at most 1, got {list(rows.shape)}")
    state = lm_gen._streaming_state
    device = state.cache.device
    t = torch.from_numpy(rows).to(device)
    width = state.cache.shape[-1]
    moshi, user = slice(1, 1 + NUM_CODEBOOKS), slice(1 + NUM_CODEBOOKS, ROWS)
    replayed = 0 if embeddings is None else embeddings.shape[0]
    if replayed:
        check_fits(embeddings, lm_gen.lm_model, "voice prompt")
    tokens_in = state.graphed_main
    try:
        for s in range(rows.shape[1]):
            if stop():
                return None
            if s < replayed:  # LMGen's main step reads its input from the token cache: give the embedding instead
                state.graphed_main = lambda *_, e=embeddings[s]: forward_embedding(lm_gen.lm_model, e[None, None])
            else:
                state.graphed_main = tokens_in
            prev = max(s - 1, 0)
            audio = torch.cat([t[moshi.start : moshi.start + 1, s], t[moshi.start + 1 : moshi.stop, prev]])
            lm_gen.step(t[user, prev][None, :, None], depformer_replace_tokens=audio[None, :, None])
            state.cache[:, 0, (s + 1) % width] = t[0, s]
    finally:
        state.graphed_main = tokens_in
    return rows[2 : 1 + NUM_CODEBOOKS, -1].copy()


def finish_prefix(lm_gen: Any, tokens: Any, acoustic: np.ndarray) -> Any:
    """After the first conversation step: the prefix's last acoustic codes replace the sampled ones in LMGen's
    token cache and in the frame that step returned (`tokens`, [1, 9, 1] or None)."""
    import torch

    state = lm_gen._streaming_state
    forced = torch.from_numpy(acoustic).to(state.cache.device)
    state.cache[:, 2 : 1 + NUM_CODEBOOKS, int(state.offset_cpu) % state.cache.shape[-1]] = forced
    if tokens is not None:
        tokens[0, 2 : 1 + NUM_CODEBOOKS, 0] = forced
    return tokens
