"""Continuations stage: a teacher-forced prompt of P frames from a dataset row, then G sampled frames
(SPEC.md "Generation and decoding").

    python -m backend.inference.generate --model runs/<id>/checkpoints/step-000100 --dataset dataset \\
        --output continuations

The loop mirrors moshi's `LMGen` but teacher-forces every stream during the prompt, which LMGen cannot
(it always samples the text token). It works in the model's own delayed layout, the sequence that
`LMModel.forward` builds in training (`training_view.delayed_input`): step s reads column s and writes
column s + 1, i.e. the text and codebook 0 of frame s and the acoustic codebooks of frame s - 1. Row k
of column s + 1 is forced from the reference while its frame s - delay[k] is inside the prompt; after
that the model samples it. With a dep_q 8 model the depformer predicts Moshi's 8 codebooks only and the
user's codebooks are read from the reference throughout (it must then cover the generated span).

Sampling draws its uniforms from one generator per dialogue, seeded from (seed, dialogue id): a
dialogue's continuation does not depend on which other dialogues share its batch.

Per dialogue `<output>/<dialogue id>.npz` holds `tokens` int64 [17, P + G'] undelayed (row 0 text,
1..8 Moshi audio, 9..16 user audio; the prompt kept), `reference` (the dataset's tokens over the same
span, shorter where the dialogue ends), `prompt_frames` and `metadata` (JSON). With a Mimi,
`<id>.continuation.wav` and `<id>.reference.wav` (stereo 24 kHz, left Moshi, right user) and
`<id>.spectrogram.png` (both side by side); with a tokenizer, `<id>.transcript.json`.
"""

import json
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from moshi.models.lm import LMModel
from moshi.utils.compile import CUDAGraphed

from backend.core import config, figures
from backend.core.atomic import atomic_path, write_text_atomic
from backend.core.device import pick_device
from backend.core.errors import InputError, StudioError
from backend.core.progress import Progress
from backend.core.spec import DELAYS, EPAD_ID, FRAME_RATE, NUM_CODEBOOKS, PAD_ID, SAMPLE_RATE, ZERO_TOKEN
from backend.dataset.training_view import delayed_input, training_rows
from backend.finetune.data import DatasetRows
from backend.inference.generate_config import DONE_FILE, SUFFIXES, GenerateConfig, output_files
from backend.inference.persona_prompt import batches_by_length, continuation_prefixes
from backend.models.loading import load_model
from backend.models.source import resolve_dtype
from backend.models.text_tokenizer import check_model
from backend.models.voice_preset import check_fits, forward_embedding
from backend.models.weights import load_mimi

ROWS = 1 + 2 * NUM_CODEBOOKS  # text, Moshi's 8 codebooks, the user's 8
MOSHI_ROWS = slice(1, 1 + NUM_CODEBOOKS)
USER_ROWS = slice(1 + NUM_CODEBOOKS, ROWS)


@dataclass
class Continuation:
    dialogue_id: str
    main_speaker: str
    start_frame: int  # where the prompt starts in the dialogue
    prompt_frames: int
    tokens: np.ndarray  # int64 [17, P + G'] undelayed, prompt first
    reference: np.ndarray  # int64 [17, <= P + G'] the dataset's rows over the same span
    metadata: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # tokens / wav / reference_wav / transcript

    @property
    def generated_frames(self) -> int:
        return self.tokens.shape[1] - self.prompt_frames


# ---------------------------------------------------------------- model and sampling


def sample(logits: torch.Tensor, temperature: float, top_k: int, uniform: torch.Tensor) -> torch.Tensor:
    """[B, V] logits -> [B] tokens: argmax at temperature 0, else inverse-CDF sampling of the tempered
    top-k distribution with one given uniform per row (so the randomness is per dialogue)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    indices = None
    if 0 < top_k < probs.shape[-1]:
        probs, indices = probs.topk(top_k, dim=-1)
    cdf = probs.cumsum(-1)
    pick = torch.searchsorted(cdf, (uniform.to(cdf) * cdf[:, -1])[:, None], right=True)
    pick = pick.clamp_max(probs.shape[-1] - 1)
    return (pick if indices is None else indices.gather(-1, pick))[:, 0]


def dialogue_seed(seed: int, dialogue_id: str) -> int:
    return zlib.crc32(f"{seed}/{dialogue_id}".encode())


class Sampler:
    """One generation step of the LM on a batch, graphable: fixed shapes, no data-dependent Python."""

    def __init__(self, model: LMModel, cfg: GenerateConfig):
        self.model, self.cfg = model, cfg
        graphs = model.device.type == "cuda" and cfg.cuda_graphs
        self.main = CUDAGraphed(model.forward_text, disable=not graphs)
        self.depth = CUDAGraphed(self._depformer, disable=not graphs)

    def text(self, logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        return sample(logits[:, 0, 0], self.cfg.text_temperature, self.cfg.text_top_k, uniform)

    def _depformer(
        self,
        text: torch.Tensor,
        hidden: torch.Tensor,
        target: torch.Tensor,
        force: torch.Tensor,
        uniforms: torch.Tensor,
    ) -> torch.Tensor:
        """Codebooks 0..dep_q-1 of one step, each conditioned on the previous one as in training; a
        forced codebook takes `target` and that token conditions the next."""
        model, cfg = self.model, self.cfg
        prev, out = text, []
        with model.depformer.streaming(text.shape[0]):
            for i in range(model.dep_q):
                logits = model.forward_depformer(i, prev[:, None, None], hidden)
                token = sample(logits[:, 0, 0], cfg.audio_temperature, cfg.audio_top_k, uniforms[:, i])
                prev = torch.where(force[i], target[:, i], token)
                out.append(prev)
        return torch.stack(out, dim=1)


# ---------------------------------------------------------------- generation


def run_batch(
    model: LMModel,
    sampler: Sampler,
    rows: list[np.ndarray],
    prompt: int,
    frames: int,
    seeds: list[int],
    progress: Callable[[int], None] | None = None,
    embeddings: torch.Tensor | None = None,
) -> np.ndarray:
    """[B, 17, frames] undelayed tokens: `rows` (each [17, >= prompt], cut or zero-padded) forced for
    their first `prompt` frames (dep_q 8: the user rows everywhere), the rest sampled. `embeddings` ([n, dim], a
    voice preset's) are the transformer's inputs of the first n steps (models/voice_preset.py)."""
    device, dep_q = model.device, model.dep_q
    max_delay = max(DELAYS)
    steps = frames + max_delay  # the last step completes the acoustic codebooks of the last frame
    # What the loop may read of the reference: the prompt, and for dep_q 8 the user rows up to their end
    # (the Moshi rows past the prompt are overwritten before they are read). ZERO: zero embedding.
    known = prompt if dep_q == ROWS - 1 else steps
    padded = np.full((len(rows), ROWS, steps), ZERO_TOKEN, dtype=np.int64)
    for b, r in enumerate(rows):
        n = min(r.shape[1], known)
        padded[b, :, :n] = r[:, :n]
    seq = torch.from_numpy(np.stack([delayed_input(p) for p in padded])).to(device)  # [B, 17, steps + 1]
    uniforms = torch.stack(
        [torch.rand(steps, 1 + dep_q, generator=torch.Generator().manual_seed(s)) for s in seeds]
    ).to(device)
    delays = torch.tensor(DELAYS[: 1 + dep_q])
    with torch.no_grad(), model.streaming(len(rows)):
        for s in range(steps):
            if embeddings is not None and s < embeddings.shape[0]:
                hidden, text_logits = forward_embedding(model, embeddings[s].expand(len(rows), 1, -1))
            else:
                hidden, text_logits = sampler.main(seq[:, :, s : s + 1])
            force = s - delays < prompt  # row k of column s + 1 holds frame s - delay[k]
            if not force.all():  # inside the prompt the depformer has nothing to predict
                target = seq[:, : 1 + dep_q, s + 1]
                text = sampler.text(text_logits, uniforms[:, s, 0])
                text = torch.where(force[0], target[:, 0], text)
                audio = sampler.depth(text, hidden, target[:, 1:], force[1:].to(device), uniforms[:, s, 1:])
                seq[:, 0, s + 1] = text
                seq[:, 1 : 1 + dep_q, s + 1] = audio
            if progress:
                progress(s + 1)
    # Undelay: frame f of row k sits in column 1 + f + delay[k].
    delayed = seq.cpu().numpy()
    return np.stack([delayed[:, k, 1 + d : 1 + d + frames] for k, d in enumerate(DELAYS)], axis=1)


def pick_dialogues(data: DatasetRows, cfg: GenerateConfig) -> list[int]:
    if cfg.dialogues:
        index = {d: i for i, d in enumerate(data.ids)}
        missing = [d for d in cfg.dialogues if d not in index]
        if missing:
            raise InputError(cfg.dataset, f"no dialogue {', '.join(repr(d) for d in missing[:3])} in the dataset")
        return [index[d] for d in cfg.dialogues]
    return list(range(len(data)))[: cfg.limit or None]


def generate(cfg: GenerateConfig, progress: Progress | None = None) -> list[Continuation]:
    """Continue the chosen dialogues; writes their files under cfg.output (unless None) and returns them."""
    config.check_numbers(cfg)
    report = progress or (lambda fraction, message: None)
    data = DatasetRows(cfg.dataset)
    chosen = pick_dialogues(data, cfg)
    p, start = cfg.prompt_frames, cfg.start_frame
    for i in chosen:
        if data.lengths[i] < start + p:
            raise InputError(
                cfg.dataset,
                f"dialogue {data.ids[i]} has {data.lengths[i]} frames, fewer than "
                f"start_frame + prompt_frames = {start + p}",
            )
    check_model(cfg.model, {"dataset": cfg.dataset}, cfg.tokenizer or None)  # one tokenizer's ids throughout
    device = pick_device(cfg.device)
    report(0.0, f"loading {cfg.model}")
    model = load_model(cfg.model, cfg.base_model, device, resolve_dtype(cfg.dtype, device))
    sampler = Sampler(model, cfg)
    user_sampled = model.dep_q == ROWS - 1
    other = "B" if cfg.main_speaker == "A" else "A"
    meta = {
        "model": cfg.model,
        "dep_q": model.dep_q,
        "user_stream": "sampled" if user_sampled else "reference",
        "config": config.to_dict(cfg),
    }

    # Persona prefixes (issue 15) go before the prompt, forced like it; a batch shares one prefix length.
    prefixes, voice_embeddings = continuation_prefixes(
        cfg.dataset,
        [data.ids[i] for i in chosen],
        cfg.main_speaker,
        cfg.text_prompt,
        cfg.voice_prompt,
        cfg.dataset_personas,
        cfg.tokenizer,
        cfg.mimi,
    )
    if voice_embeddings is not None:
        check_fits(voice_embeddings, model, cfg.voice_prompt)
    results: list[Continuation] = []
    done_count = 0
    for positions in batches_by_length([x.shape[1] for x in prefixes], cfg.batch_size):
        first, done_count = done_count, done_count + len(positions)
        batch = [chosen[k] for k in positions]
        lp = prefixes[positions[0]].shape[1]
        rows = [
            np.concatenate(
                [prefixes[k], training_rows(data.speaker(i, cfg.main_speaker), data.speaker(i, other))[:, start:]],
                axis=1,
            )
            for k, i in zip(positions, batch)
        ]
        # A dep_q 8 model reads the user stream from the reference: it cannot go past its end.
        gens = [cfg.gen_frames if user_sampled else min(cfg.gen_frames, r.shape[1] - lp - p) for r in rows]
        seeds = [dialogue_seed(cfg.seed, data.ids[i]) for i in batch]
        frames = lp + p + max(gens)
        steps = frames + max(DELAYS)

        def step_done(s: int, done: int = first) -> None:
            report(
                (done + len(batch) * s / steps) / len(chosen),
                f"dialogues {done + 1}-{done + len(batch)} of {len(chosen)}: step {s}/{steps}",
            )

        if max(gens) > 0:
            tokens = run_batch(model, sampler, rows, lp + p, frames, seeds, step_done, voice_embeddings)
        else:
            tokens = np.stack([r[:, : lp + p] for r in rows])
        for b, i in enumerate(batch):
            n = lp + p + gens[b]
            results.append(
                Continuation(
                    dialogue_id=data.ids[i],
                    main_speaker=cfg.main_speaker,
                    start_frame=start,
                    prompt_frames=p,
                    tokens=tokens[b, :, lp:n].copy(),
                    reference=rows[b][:, lp:n].copy(),
                    metadata=meta
                    | {
                        "dialogue_id": data.ids[i],
                        "dialogue_seed": seeds[b],
                        "generated_frames": gens[b],
                        "persona_frames": lp,
                    },
                )
            )
    order = {data.ids[i]: k for k, i in enumerate(chosen)}
    results.sort(key=lambda c: order[c.dialogue_id])  # batches grouped by prefix length
    if cfg.output is not None:
        report(1.0, "writing files")
        write_outputs(results, cfg)
    report(1.0, f"{len(results)} continuation(s)")
    return results


# ---------------------------------------------------------------- decoding and files


def decode_continuation(mimi: Any, tokens: np.ndarray) -> np.ndarray:
    """[17, T] tokens -> float32 [2, T * 1920] at 24 kHz: left Moshi (rows 1..8), right the user (9..16),
    both channels in one Mimi batch."""
    from backend.dataset.codec import decode

    if tokens.ndim != 2 or tokens.shape[0] != ROWS:
        raise ValueError(f"expected tokens of shape [17, T], got {list(tokens.shape)}")
    return decode(mimi, np.stack([tokens[MOSHI_ROWS], tokens[USER_ROWS]]))


def timed_transcript(
    text_row: Sequence[int], sp: Any, pad_id: int = PAD_ID, epad_id: int = EPAD_ID
) -> list[dict[str, Any]]:
    """Words of a text stream with their times (seconds from the row's first frame): pieces join into
    a word until the next piece that starts with the word boundary "▁"; a word runs from its first
    piece's frame to the end of its last piece's frame. PAD, EPAD, control ids and ids outside the
    tokenizer are skipped."""
    groups: list[tuple[list[int], int, int]] = []  # (ids, first frame, last frame)
    for frame, token in enumerate(int(t) for t in text_row):
        if token in (pad_id, epad_id) or not 0 <= token < sp.vocab_size() or sp.is_control(token):
            continue
        if not groups or sp.id_to_piece(token).startswith("▁"):
            groups.append(([token], frame, frame))
        else:
            ids, begin, _ = groups[-1]
            groups[-1] = (ids + [token], begin, frame)
    words = [(sp.decode(ids).strip(), begin, end) for ids, begin, end in groups]
    return [{"word": w, "start": begin / FRAME_RATE, "end": (end + 1) / FRAME_RATE} for w, begin, end in words if w]


def save_continuation(c: Continuation, path: Path) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                tokens=c.tokens,
                reference=c.reference,
                prompt_frames=np.int64(c.prompt_frames),
                metadata=np.array(
                    json.dumps(c.metadata | {"main_speaker": c.main_speaker, "start_frame": c.start_frame})
                ),
            )
    return path


def load_continuation(path: str | Path) -> Continuation:
    """A continuation back from its .npz (the files beside it listed when present)."""
    path = Path(path)
    try:
        with np.load(path) as z:
            tokens, reference = z["tokens"], z["reference"]
            prompt, meta = int(z["prompt_frames"]), json.loads(str(z["metadata"]))
    except (OSError, KeyError, ValueError) as e:
        raise InputError(path, f"not a continuation file ({e})") from None
    stem = path.with_name(path.name.removesuffix(SUFFIXES["tokens"]))
    files = {key: f for key, suffix in SUFFIXES.items() if (f := stem.with_name(stem.name + suffix)).is_file()}
    return Continuation(
        meta["dialogue_id"], meta["main_speaker"], meta["start_frame"], prompt, tokens, reference, meta, files
    )


def write_outputs(results: list[Continuation], cfg: GenerateConfig) -> None:
    from backend.data.audio_io import write_stereo_wav
    from backend.models.text_tokenizer import load_spm

    assert cfg.output is not None
    mimi = load_mimi(cfg.mimi, device=pick_device(cfg.device)) if cfg.mimi else None
    sp = load_spm(cfg.tokenizer) if cfg.tokenizer else None
    for c in results:
        files = output_files(cfg.output, c.dialogue_id)
        c.files["tokens"] = save_continuation(c, files["tokens"])
        if mimi is not None:
            audio, reference = decode_continuation(mimi, c.tokens), decode_continuation(mimi, c.reference)
            c.files["wav"] = write_stereo_wav(files["wav"], audio)
            c.files["reference_wav"] = write_stereo_wav(files["reference_wav"], reference)
            figure = figures.spectrograms(
                reference, audio, SAMPLE_RATE, c.prompt_frames / FRAME_RATE, f"{c.dialogue_id} ({Path(cfg.model).name})"
            )
            c.files["spectrogram"] = figures.save(figure, files["spectrogram"])
        if sp is not None:
            words = {
                "continuation": timed_transcript(c.tokens[0], sp),
                "reference": timed_transcript(c.reference[0], sp),
                "prompt_end": c.prompt_frames / FRAME_RATE,
            }
            write_text_atomic(files["transcript"], json.dumps(words, indent=1) + "\n")
            c.files["transcript"] = files["transcript"]
    config.save(cfg, cfg.output / DONE_FILE)


def main(argv: list[str] | None = None) -> int:
    parser = config.cli_parser(
        GenerateConfig,
        "Prompted continuation of dataset dialogues: a teacher-forced "
        "prompt, then sampled frames; tokens, WAV and timed transcripts.",
    )
    try:
        cfg = config.from_cli(GenerateConfig, parser.parse_args(argv))
        results = generate(cfg, lambda f, msg: print(f"[{100 * f:5.1f}%] {msg}", file=sys.stderr, flush=True))
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for c in results:
        print(
            f"{c.dialogue_id}: {c.prompt_frames} prompt + {c.generated_frames} generated frames -> "
            f"{', '.join(str(p) for p in c.files.values()) or '(in memory)'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
