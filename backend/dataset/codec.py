"""Mimi encode/decode for stereo dialogues: both channels in one batch, long files in chunks.

Chunked encoding runs Mimi in streaming mode, so convolutions carry their left context from one
chunk to the next. Moshi's streaming attention keeps a ring KV cache of exactly `context` steps,
which is only exact when one step arrives per call: with a chunk of n steps, the first queries of
the chunk would find their oldest keys already overwritten. `_widen_kv_caches` gives each cache
room for `context + n` steps; the attention mask still limits every query to `context` steps, so
chunked codes equal whole-file codes while attention cost stays linear in the file length
(a whole-file call builds a T x T mask: quadratic in time and memory).

On a CPU the channels can also be spread over several model copies (`replicas`), one Python thread
and one intra-op thread each: measured on 2 shared cores, this beats one model running a batch on
2 intra-op threads, whose many small parallel regions stall whenever another process takes a core.
"""

import copy
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from moshi.models.compression import MimiModel
from moshi.modules.transformer import RingKVCache, StreamingMultiheadAttention
from moshi.utils.compile import no_cuda_graph

from backend.core.spec import FRAME_SIZE, NUM_CODEBOOKS, frames_for_samples

# 2.56 s per chunk. Measured on 2 CPU cores (bench/bench_tokenize.py): SEANet's early layers hold
# 64 channels at 24 kHz, so a whole-file call streams huge activations through memory; chunks of
# 16-64 frames stay cache-friendly, 1-4 frames drown in per-call overhead.
DEFAULT_CHUNK_FRAMES = 32


Models = MimiModel | Sequence[MimiModel]


def _model_device(mimi: MimiModel) -> torch.device:
    return next(mimi.parameters()).device


def replicas(mimi: MimiModel, n: int) -> list[MimiModel]:
    """`mimi` and n - 1 copies of it: streaming state lives inside the modules, so each concurrent
    encoder needs its own copy (the full Mimi costs about 320 MB per copy in float32)."""
    return [mimi] + [copy.deepcopy(mimi) for _ in range(n - 1)]


def _widen_kv_caches(mimi: MimiModel, steps_per_call: int) -> None:
    """Replace each streaming attention's ring cache by one holding context + steps_per_call steps
    (call right after entering streaming mode, before the first chunk)."""
    for module in mimi.modules():
        if isinstance(module, StreamingMultiheadAttention) and module._streaming_state is not None:
            old = module._streaming_state.kv_cache
            if old is None or module.context is None:
                continue
            _, batch, heads, _, dim = old.cache.shape
            module._streaming_state.kv_cache = RingKVCache(
                batch,
                heads,
                dim,
                module.context + steps_per_call,
                respect_exec_mask=old.respect_exec_mask,
                device=old.cache.device,
                dtype=old.cache.dtype,
            )


def _encode_channels(mimi: MimiModel, x: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """[B, 1, N] waveforms (same length) -> [B, 8, ceil(N / 1920)] codes, chunk by chunk."""
    batch, _, n = x.shape
    frames = frames_for_samples(n)
    x = torch.nn.functional.pad(x, (0, frames * FRAME_SIZE - n))  # as Mimi's own whole-file padding
    chunk = chunk_frames * FRAME_SIZE
    # The encoder transformer runs at the encoder frame rate (25 Hz for Mimi): steps per chunk.
    steps = int(round(chunk_frames * mimi.encoder_frame_rate / mimi.frame_rate))
    out = []
    with no_cuda_graph(), mimi.streaming(batch):  # the last chunk is shorter: no fixed-shape CUDA graphs
        _widen_kv_caches(mimi, steps)
        for start in range(0, x.shape[-1], chunk):
            out.append(mimi.encode(x[..., start : start + chunk]))
    return torch.cat(out, dim=-1)


def _encode_in_worker(mimi: MimiModel, x: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    # With OpenMP the thread count is per calling thread, so this leaves the caller's setting alone;
    # grad mode is per thread too, hence inference_mode here.
    torch.set_num_threads(1)
    with torch.inference_mode():
        return _encode_channels(mimi, x, chunk_frames)


def encode_batch(
    models: Models,
    dialogues: Sequence[np.ndarray],
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    device: str | torch.device | None = None,
) -> list[np.ndarray]:
    """Encode several stereo dialogues ([2, N_i] float32, 24 kHz): int64 [2, 8, ceil(N_i / 1920)] each.

    All 2 x len(dialogues) channels form one batch; shorter dialogues are zero-padded at the end
    (Mimi is causal, so their frames are unaffected) and cut back. `models` is one Mimi, or several
    copies from `replicas` that share the channels out, one worker thread each (CPU throughput).
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    for i, audio in enumerate(dialogues):
        if audio.ndim != 2 or audio.shape[0] != 2 or audio.shape[1] == 0:
            raise ValueError(f"dialogue {i}: expected stereo audio of shape [2, N>0], got {list(audio.shape)}")
    models = [models] if isinstance(models, MimiModel) else list(models)
    device = torch.device(device) if device is not None else _model_device(models[0])
    longest = max(a.shape[1] for a in dialogues)
    x = torch.zeros(2 * len(dialogues), 1, longest, dtype=torch.float32)
    for i, audio in enumerate(dialogues):
        x[2 * i : 2 * i + 2, 0, : audio.shape[1]] = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    x = x.to(device)
    for mimi in models:
        mimi.set_num_codebooks(NUM_CODEBOOKS)
    groups = [g for g in torch.arange(x.shape[0]).tensor_split(len(models)) if len(g)]
    if len(groups) == 1:
        with torch.inference_mode():
            codes = _encode_channels(models[0], x, chunk_frames)
    else:
        with ThreadPoolExecutor(len(groups)) as pool:
            codes = torch.cat(list(pool.map(lambda m, g: _encode_in_worker(m, x[g], chunk_frames), models, groups)))
    codes = codes.to("cpu", torch.int64).numpy()
    return [codes[2 * i : 2 * i + 2, :, : frames_for_samples(a.shape[1])].copy() for i, a in enumerate(dialogues)]


def encode_stereo(
    models: Models,
    audio: np.ndarray,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """[2, N] float32 24 kHz -> int64 [2, 8, ceil(N / 1920)] (row 0 = speaker A, row 1 = speaker B)."""
    return encode_batch(models, [audio], chunk_frames, device)[0]


def decode(mimi: MimiModel, codes: np.ndarray, chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> np.ndarray:
    """int [B, 8, T] codes -> float32 [B, T * 1920] waveforms at 24 kHz, decoded chunk by chunk in
    streaming mode (convolution and attention state carried across chunks, as in encoding)."""
    if codes.ndim != 3 or codes.shape[1] != NUM_CODEBOOKS:
        raise ValueError(f"expected codes of shape [B, {NUM_CODEBOOKS}, T], got {list(codes.shape)}")
    device = _model_device(mimi)
    c = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)).to(device)
    steps = int(round(chunk_frames * mimi.encoder_frame_rate / mimi.frame_rate))
    out = []
    with torch.inference_mode(), no_cuda_graph(), mimi.streaming(c.shape[0]):
        _widen_kv_caches(mimi, steps)
        for start in range(0, c.shape[-1], chunk_frames):
            out.append(mimi.decode(c[..., start : start + chunk_frames]))
    return torch.cat(out, dim=-1)[:, 0].float().cpu().numpy()
