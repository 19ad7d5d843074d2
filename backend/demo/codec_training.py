"""Train the demo codec: a small `moshi` MimiModel (models.demo_mimi_config) on offline synthetic speech.

    python -m backend.demo.codec_training --output-dir assets/demo_mimi

Seeded end to end (sentences, voices, crops, initialisation), so the same command on the same
machine rebuilds the same weights. Losses: multi-resolution log-mel L1 plus a small waveform L1 and
the quantizer's commitment penalty. The quantizer is bypassed for the first `warmup_steps` so the
encoder has learnt something before its codebooks are initialised by k-means on a large batch of
real latents; after that moshi's own EMA codebook updates and dead-code replacement do the rest.
"""

import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from moshi.models import loaders
from moshi.models.compression import MimiModel

from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.config import cli_parser, from_cli, option, to_dict
from backend.core.spec import FRAME_SIZE, SAMPLE_RATE
from backend.demo import speech_corpus
from backend.demo.dialogues import DEMO_DIR
from backend.models.source import demo_mimi_config, save_mimi
from backend.models.weights import load_mimi

MEL_SCALES = (256, 512, 1024, 2048)  # STFT windows of the reconstruction loss
REFERENCE_FRAMES = 13  # ~1 s stored reconstruction (reference.npz)


@dataclass
class CodecTrainConfig:
    output_dir: str = option(
        "assets/demo_mimi",
        "where mimi.safetensors, mimi_config.json, training.json and "
        "reference.npz go (relative to the repository root when run from it)",
    )
    corpus_dir: str = option("work/codec_corpus", "cache of the synthesized sentences (FLAC), reused by later runs")
    train_sentences: int = option(900, "sentences synthesized for training")
    held_out_sentences: int = option(40, "sentences kept out of training, for evaluation")
    steps: int = option(6000, "optimizer steps")
    warmup_steps: int = option(300, "first steps without quantization (the encoder learns before k-means)")
    batch_size: int = option(12, "crops per step")
    segment_frames: int = option(12, "crop length in 80 ms frames")
    lr: float = option(2e-3, "peak learning rate (Adam), cosine decay to 5% of it")
    n_filters: int = option(16, "SEANet base channels of the codec")
    dimension: int = option(128, "latent dimension of the codec")
    seed: int = option(1234, "seed of sentences, voices, crops and initialisation")
    threads: int = option(2, "torch CPU threads")
    log_every: int = option(100, "print the losses every N steps")
    save_every: int = option(1000, "also write the codec folder every N steps (0: only at the end)")


class MelLoss(torch.nn.Module):
    """Multi-resolution L1 distance between log-mel spectrograms (and a small linear-mel term)."""

    def __init__(self, scales: tuple[int, ...] = MEL_SCALES, n_mels: int = 64):
        super().__init__()
        self.scales = scales
        for n_fft in scales:
            self.register_buffer(f"fb{n_fft}", _mel_filterbank(n_fft, min(n_mels, n_fft // 8)), persistent=False)
            self.register_buffer(f"win{n_fft}", torch.hann_window(n_fft), persistent=False)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for n_fft in self.scales:
            mel_y, mel_x = (self._mel(s.squeeze(1), n_fft) for s in (y, x))
            total = total + F.l1_loss(torch.log(mel_y + 1e-5), torch.log(mel_x + 1e-5)) + F.l1_loss(mel_y, mel_x)
        return total / len(self.scales)

    def _mel(self, s: torch.Tensor, n_fft: int) -> torch.Tensor:
        spec = torch.stft(s, n_fft, hop_length=n_fft // 4, window=getattr(self, f"win{n_fft}"), return_complex=True)
        return torch.matmul(getattr(self, f"fb{n_fft}"), spec.abs())


def _mel_filterbank(n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular HTK mel filters, [n_mels, n_fft // 2 + 1]."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(SAMPLE_RATE / 2)), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.linspace(0, SAMPLE_RATE / 2, n_fft // 2 + 1)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    fb = np.maximum(0.0, np.minimum((bins - lower) / (centre - lower), (upper - bins) / (upper - centre)))
    return torch.tensor(fb, dtype=torch.float32)


def reconstruct(mimi: MimiModel, x: torch.Tensor, quantize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """MimiModel.forward with the quantizer optional: (waveform [B, 1, T], commitment penalty)."""
    emb = latents(mimi, x)
    penalty = x.new_zeros(())
    if quantize:
        q_res = mimi.quantizer(emb, mimi.frame_rate)
        emb, penalty = q_res.x, q_res.penalty
    emb = mimi._to_encoder_framerate(emb)
    (emb,) = mimi.decoder_transformer(emb)
    return mimi.decoder(emb)[..., : x.shape[-1]], penalty


def latents(mimi: MimiModel, x: torch.Tensor) -> torch.Tensor:
    """Unquantized latents at the frame rate, [B, D, frames]."""
    emb = mimi.encoder(x)
    (emb,) = mimi.encoder_transformer(emb)
    return mimi._to_framerate(emb)


class Crops:
    """Seeded random crops of whole frames from one long corpus array."""

    def __init__(self, audio: np.ndarray, frames: int, seed: int):
        self.audio, self.length = torch.from_numpy(audio), frames * FRAME_SIZE
        self.rng = random.Random(seed)

    def batch(self, size: int) -> torch.Tensor:
        starts = [self.rng.randrange(0, len(self.audio) - self.length) for _ in range(size)]
        return torch.stack([self.audio[s : s + self.length] for s in starts])[:, None]


@torch.no_grad()
def init_codebooks(mimi: MimiModel, crops: Crops, batches: int = 24, batch_size: int = 16) -> None:
    """k-means every codebook on real latents: one quantizer call per RVQ level (moshi initialises a
    level only once the previous one is initialised)."""
    emb = torch.cat([latents(mimi, crops.batch(batch_size)) for _ in range(batches)], dim=-1)
    for _ in range(mimi.quantizer.max_n_q + 1):
        mimi.quantizer(emb, mimi.frame_rate)


def learning_rate(cfg: CodecTrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / 100)
    return cfg.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))


def train_codec(cfg: CodecTrainConfig) -> Path:
    """Synthesize (or reuse) the corpus, train, and write the codec folder; returns it."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_texts, held_out = speech_corpus.split_sentences(cfg.train_sentences, cfg.held_out_sentences, cfg.seed)
    corpus = Path(cfg.corpus_dir)
    paths = speech_corpus.build_corpus(train_texts, corpus / "train", cfg.seed)
    speech_corpus.build_corpus(held_out, corpus / "held_out", cfg.seed + 1)  # for bench/bench_demo_codec.py
    crops = Crops(speech_corpus.load_corpus(paths), cfg.segment_frames, cfg.seed)
    mimi_cfg = demo_mimi_config(cfg.n_filters, cfg.dimension)
    mimi = loaders.get_mimi(None, mimi_config=mimi_cfg)  # untrained: zero codebooks, set by k-means below
    mimi.train()
    mel_loss = MelLoss()
    opt = torch.optim.Adam(mimi.parameters(), lr=cfg.lr, betas=(0.8, 0.99))
    history: list[dict[str, float]] = []
    started = time.time()
    for step in range(cfg.steps):
        quantize = step >= cfg.warmup_steps
        if step == cfg.warmup_steps:
            init_codebooks(mimi, crops)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        x = crops.batch(cfg.batch_size)
        y, penalty = reconstruct(mimi, x, quantize)
        mel = mel_loss(y, x)
        wave = F.l1_loss(y, x)
        loss = mel + 0.1 * wave + penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mimi.parameters(), 1.0)
        opt.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            row = {
                "step": step,
                "mel": mel.item(),
                "wave": wave.item(),
                "commit": float(penalty.detach()),
                "seconds": round(time.time() - started, 1),
            }
            history.append(row)
            print(json.dumps(row), flush=True)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            _save(mimi, mimi_cfg, cfg, history)
    return _save(mimi, mimi_cfg, cfg, history)


def _save(mimi: MimiModel, mimi_cfg: dict, cfg: CodecTrainConfig, history: list[dict[str, float]]) -> Path:
    out = save_mimi(mimi, mimi_cfg, cfg.output_dir, half_parameters=True)  # a few MB in the repository
    write_text_atomic(out / "training.json", json.dumps({"config": to_dict(cfg), "history": history}, indent=1) + "\n")
    write_reference(out)
    return out


def reference_clip() -> np.ndarray:
    """One second of a demo dialogue's left channel: the input of the stored reconstruction."""
    from backend.data.audio_io import load_stereo

    audio, _ = load_stereo(DEMO_DIR / "demo_cafe.flac")
    return audio[0, : REFERENCE_FRAMES * FRAME_SIZE].astype(np.float32)


def write_reference(folder: Path) -> Path:
    """`reference.npz` in a codec folder: the codes of `reference_clip()` and their decoding by the codec
    as saved (reloaded through moshi's loader), so tests notice any change to the weights or the loader."""
    mimi = load_mimi(folder)
    with torch.no_grad():
        codes = mimi.encode(torch.from_numpy(reference_clip())[None, None])
        audio = mimi.decode(codes)[0, 0]
    with atomic_path(folder / "reference.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, codes=codes[0].numpy().astype(np.int16), audio=audio.numpy().astype(np.float16))
    return folder / "reference.npz"


def main(argv: list[str] | None = None) -> int:
    cfg = from_cli(CodecTrainConfig, cli_parser(CodecTrainConfig, __doc__.splitlines()[0]).parse_args(argv))
    print(f"wrote {train_codec(cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
