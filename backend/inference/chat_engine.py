"""The chat engine: one Moshi model in this process, stepped one 80 ms frame at a time.

Per frame (SPEC.md: 1920 samples at 24 kHz): Mimi encodes the user's audio, `LMGen.step` samples
Moshi's text token and 8 audio tokens, Mimi decodes them. This is moshi's own server loop
(`moshi.server`, which must never be imported: it starts a server at import), minus its waste:
no per-frame `.item()` sync inside the loop beyond the one text token, no CUDA calls on CPU.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from moshi.models import LMGen, loaders

from backend.core.device import pick_device
from backend.core.errors import InputError
from backend.core.spec import EPAD_ID, FRAME_SIZE, NUM_CODEBOOKS, PAD_ID
from backend.inference.chat_config import ChatConfig
from backend.inference.live_text import LiveText
from backend.inference.persona_prompt import PersonaCache
from backend.models import personaplex
from backend.models.loading import load_model
from backend.models.persona import finish_prefix, step_prefix, voice_file
from backend.models.source import resolve_dtype
from backend.models.text_tokenizer import check_model
from backend.models.weights import load_mimi


@dataclass
class FrameOutput:
    pcm: np.ndarray | None  # 1920 float32 samples of Moshi's voice (None while the model warms up)
    text: str  # the text piece of this frame ("" for PAD / EPAD)
    compute_ms: float


class ChatEngine:
    """Mimi + LMGen in streaming mode for one conversation at a time; `reset` starts a new one."""

    def __init__(self, cfg: ChatConfig):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dtype = resolve_dtype(cfg.dtype, self.device)
        check_model(cfg.model, tokenizer=cfg.tokenizer or None)  # its text ids are this tokenizer's pieces
        if personaplex.is_personaplex(cfg.model):  # dep_q 16; Moshi's 8 steps do not depend on the user's 8
            lm = personaplex.load_personaplex(cfg.model, device=self.device, dtype=dtype, dep_q=NUM_CODEBOOKS)
        else:
            lm = load_model(cfg.model, device=self.device, dtype=dtype)
        if lm.dep_q != NUM_CODEBOOKS:
            raise InputError(
                cfg.model,
                f"dep_q {lm.dep_q}: chat needs a clean model (dep_q {NUM_CODEBOOKS}); "
                "export the checkpoint clean (the Fine-tune tab's 'clean for "
                "serving' box; moshi-studio export --clean)",
            )
        self.mimi = load_mimi(cfg.mimi, device=self.device)
        self.tokenizer = self._tokenizer(cfg)
        self.text = LiveText(self.tokenizer)
        self.lm_gen = LMGen(
            lm,
            temp=cfg.audio_temperature,
            temp_text=cfg.text_temperature,
            top_k=cfg.audio_top_k,
            top_k_text=cfg.text_top_k,
        )
        self.mimi.streaming_forever(1)
        self.lm_gen.streaming_forever(1)
        self.personas = PersonaCache(self.tokenizer, self.mimi)
        self._first = True
        self._prefix_tail: np.ndarray | None = None  # the persona prefix's last acoustic codes, forced once
        self.warmup()

    @staticmethod
    def _tokenizer(cfg: ChatConfig):  # -> sentencepiece.SentencePieceProcessor
        from backend.models.text_tokenizer import load_spm

        if cfg.tokenizer:
            return load_spm(cfg.tokenizer)
        if personaplex.is_personaplex_folder(cfg.model):
            return load_spm(personaplex.tokenizer_file(cfg.model))
        return loaders.CheckpointInfo.from_hf_repo(cfg.model).get_text_tokenizer()

    def set_sampling(
        self, text_temperature: float, text_top_k: int, audio_temperature: float, audio_top_k: int
    ) -> None:
        self.lm_gen.temp_text, self.lm_gen.top_k_text = text_temperature, text_top_k
        self.lm_gen.temp, self.lm_gen.top_k = audio_temperature, audio_top_k

    @torch.no_grad()
    def warmup(self, frames: int = 4) -> None:
        """A few silent frames so the first real frame does not pay for lazy initialisation."""
        for _ in range(frames):
            self.step(np.zeros(FRAME_SIZE, dtype=np.float32))
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """A fresh conversation: empty streaming states, fresh seed (the config's unless given)."""
        self.mimi.reset_streaming()
        self.lm_gen.reset_streaming()
        self.text.reset()
        torch.manual_seed(self.cfg.seed if seed is None else seed)
        self._first = True
        self._prefix_tail = None

    @torch.no_grad()
    def start(self, cfg: ChatConfig, stop: Callable[[], bool] = lambda: False) -> bool:
        """A fresh conversation with `cfg`'s seed and persona: PersonaPlex's system prompt (models/persona.py) is
        stepped through the model first, so the conversation starts from the state it leaves. False when `stop()`
        became true meanwhile (the client left): the prefix was abandoned, the next `start` resets the state."""
        voice = voice_file(cfg.voices_dir, cfg.voice_prompt) if cfg.voice_prompt else None
        persona = self.personas.persona(cfg.text_prompt, voice)
        self.reset(cfg.seed)
        if persona is not None:
            self._prefix_tail = step_prefix(self.lm_gen, persona.rows(), persona.voice_embeddings, stop)
            return self._prefix_tail is not None
        return True

    @torch.no_grad()
    def step(self, pcm: np.ndarray) -> FrameOutput:
        """One 80 ms frame of the user's audio (1920 float32 samples at 24 kHz) in, Moshi's frame out."""
        start = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32)).to(self.device)[None, None]
        codes = self.mimi.encode(x)
        if self._first:
            # As moshi.server: the first frame carries the encoder's left padding, so the encoder is
            # reset once to pad again on the next call; its codes still go to the LM.
            self.mimi.reset_streaming()
            self._first = False
        tokens = self.lm_gen.step(codes)
        if self._prefix_tail is not None:
            tokens = finish_prefix(self.lm_gen, tokens, self._prefix_tail)
            self._prefix_tail = None
        out, text = None, ""
        if tokens is not None:
            out = self.mimi.decode(tokens[:, 1 : 1 + NUM_CODEBOOKS])[0, 0].float().cpu().numpy()
            token = int(tokens[0, 0, 0])
            # A model whose text card exceeds the tokenizer (the random demo LM) can sample ids it lacks.
            if token not in (PAD_ID, EPAD_ID) and token < self.tokenizer.vocab_size():
                text = self.text.piece(token)
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return FrameOutput(out, text, (time.perf_counter() - start) * 1000)
