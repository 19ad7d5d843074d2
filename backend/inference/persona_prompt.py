"""Persona prompts at inference (issue 15): which persona a continuation or a conversation starts with, and the
one rule for voice prompts that a client names (`/api/chat?voice_prompt=<file>`, as PersonaPlex's web client)."""

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from backend.core.errors import ConfigError
from backend.models.persona import ROWS, Persona, check_text_prompt, has_role_text, make_persona, voice_codes
from backend.models.voice_preset import VoicePreset, is_preset, read_preset


class PersonaCache:
    """Personas built from (role text, voice file) with one tokenizer and Mimi; the voice's codes are kept per
    file version, so a conversation restarted with the same voice does not encode it again."""

    def __init__(self, sp: Any, mimi: Any):
        self.sp, self.mimi = sp, mimi
        self._voices: dict[tuple[str, int, int], np.ndarray | VoicePreset] = {}

    def persona(self, text: str, voice: Path | None) -> Persona | None:
        """None when there is neither role text nor voice: the conversation starts as without personas."""
        if not has_role_text(text) and voice is None:
            return None
        codes, embeddings = None, None
        if voice is not None:
            stat = voice.stat()
            key = (str(voice), stat.st_mtime_ns, stat.st_size)
            if key not in self._voices:
                if len(self._voices) >= 8:
                    self._voices.clear()
                self._voices[key] = read_preset(voice) if is_preset(voice) else voice_codes(self.mimi, voice)
            found = self._voices[key]
            codes, embeddings = (found.codes, found.embeddings) if isinstance(found, VoicePreset) else (found, None)
        return make_persona(check_text_prompt(text), self.sp, codes, embeddings)


def continuation_prefixes(
    dataset: str | Path,
    ids: list[str],
    main_speaker: str,
    text_prompt: str,
    voice_prompt: str,
    dataset_personas: bool,
    tokenizer: str,
    mimi: str,
) -> tuple[list[np.ndarray], Any]:
    """Per dialogue the persona rows ([17, P], P = 0 without a persona) that go before its prompt: the one given
    (role text and/or voice file) for all, else the dialogue's stored persona for its Moshi speaker, as in
    training (dataset/personas.py); and the embeddings of a given voice preset (the first inputs of every
    prefix, voice_preset.py), else None."""
    from backend.dataset.personas import load_personas

    empty = np.zeros((ROWS, 0), dtype=np.int64)
    if has_role_text(text_prompt) or voice_prompt:
        if has_role_text(text_prompt) and not tokenizer:
            raise ConfigError("text_prompt: needs the LM's tokenizer (set tokenizer)")
        preset = read_preset(voice_prompt) if voice_prompt and is_preset(voice_prompt) else None
        if voice_prompt and not preset and not mimi:
            raise ConfigError("voice_prompt: needs the Mimi that tokenized the data (set mimi)")
        from backend.dataset.personas import build_persona
        from backend.models.persona import read_voice

        voice = read_voice(voice_prompt) if voice_prompt and not preset else None
        persona = build_persona(check_text_prompt(text_prompt), tokenizer, voice, mimi, voice_prompt)
        if preset:
            persona = replace(persona, voice=preset.codes, voice_embeddings=preset.embeddings)
        return [persona.rows()] * len(ids), persona.voice_embeddings
    stored = load_personas(dataset) if dataset_personas else {}
    return [stored[(i, main_speaker)].rows() if (i, main_speaker) in stored else empty for i in ids], None


def batches_by_length(lengths: list[int], size: int) -> list[list[int]]:
    """Positions grouped into batches of at most `size` with equal `lengths` (a batch shares one prompt
    length), in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for pos, n in enumerate(lengths):
        groups.setdefault(n, []).append(pos)
    return [g[k : k + size] for g in groups.values() for k in range(0, len(g), size)]
