"""PersonaPlex's voice presets (issue 26): a `.pt` written by PersonaPlex's own LMGen (save_voice_prompt_embeddings)
from known voice codes, replayed by the studio in chat (LMGen) and continuations (run_batch), must leave the model
where the same voice given as codes leaves it; training refuses presets."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from moshi.models import LMGen

from backend.core.errors import InputError
from backend.inference.generate import Sampler, run_batch
from backend.inference.generate_config import GenerateConfig
from backend.models import personaplex
from backend.models.persona import make_persona, read_voice, step_prefix
from backend.models.source import tiny_lm_kwargs
from backend.models.voice_preset import read_preset
from tests.test_personaplex import personaplex_folder
from tests.upstream_helpers import run_upstream, upstream_tree

VOICE_FRAMES = 7

# Runs in PersonaPlex's vendored moshi: its LMModel (weights saved under its names for the studio to load) and its
# LMGen stepping the voice phase with save_voice_prompt_embeddings; only the Mimi encoding is replaced by the
# test's codes (frames of [1, 8, 1], what its encode_from_sphn yields), so no Mimi is needed.
_MAKE_PRESET = """
import json, sys, numpy as np, torch
from moshi.models.lm import LMGen, LMModel
from safetensors.torch import save_file
kwargs, weights, codes_file, wav = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
torch.manual_seed(0)
lm = LMModel(device="cpu", dtype=torch.float32, **kwargs).eval()
save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, weights)
codes = torch.load(codes_file)
gen = LMGen(lm, device="cpu", audio_silence_frame_cnt=6, sample_rate=24000, frame_rate=12.5,
            save_voice_prompt_embeddings=True)
gen.streaming_forever(1)
gen.voice_prompt, gen.voice_prompt_audio = wav, np.zeros((1, 1920), dtype=np.float32)
gen._encode_voice_prompt_frames = lambda mimi: iter(codes[None, :, f:f + 1] for f in range(codes.shape[1]))
gen.reset_streaming()
gen._step_voice_prompt(None)
"""


@pytest.fixture(scope="module")
def preset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("preset")
    vendored = upstream_tree("NVIDIA/personaplex", "moshi/moshi", tmp / "personaplex")
    folder, _ = personaplex_folder(tmp / "pp", dep_q=16)
    codes = torch.randint(0, 2048, (8, VOICE_FRAMES))
    torch.save(codes, tmp / "codes.pt")
    run_upstream(
        _MAKE_PRESET,
        vendored.parent,
        json.dumps(tiny_lm_kwargs() | {"dep_q": 16}),
        str(folder / "model.safetensors"),
        str(tmp / "codes.pt"),
        str(tmp / "NATX1.wav"),
    )
    return folder, tmp / "NATX1.pt", codes.numpy()


def test_preset_holds_the_last_frames(preset) -> None:  # type: ignore[no-untyped-def]
    _, pt, codes = preset
    got = read_preset(pt)
    assert got.codes.shape == (8, VOICE_FRAMES) and got.embeddings.shape == (VOICE_FRAMES - 1, 64)
    np.testing.assert_array_equal(got.codes[:, -2:], codes[:, -2:])
    with pytest.raises(InputError, match="not audio"):
        read_voice(pt)  # training's personas need audio


def _chat_logits(lm, persona) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    logits: list[torch.Tensor] = []
    gen = LMGen(lm, on_text_logits_hook=lambda x: logits.append(x.clone()))
    user = torch.randint(0, 2048, (1, 8, 1), generator=torch.Generator().manual_seed(1))
    with gen.streaming(1):
        step_prefix(gen, persona.rows(), persona.voice_embeddings)
        logits.clear()
        torch.manual_seed(2)
        for _ in range(3):
            gen.step(user)
    return logits


def test_chat_replays_a_preset_as_its_voice(preset) -> None:  # type: ignore[no-untyped-def]
    folder, pt, codes = preset
    lm = personaplex.load_personaplex(folder, dep_q=8)  # as the chat engine loads PersonaPlex
    got = read_preset(pt)
    from_codes = _chat_logits(lm, make_persona("", None, codes))
    from_preset = _chat_logits(lm, make_persona("", None, got.codes, got.embeddings))
    for a, b in zip(from_codes, from_preset, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # replaying 1.05 x the embeddings moves them 1.5e-4


def test_continuations_replay_a_preset_as_its_voice(preset) -> None:  # type: ignore[no-untyped-def]
    folder, pt, codes = preset
    lm = personaplex.load_personaplex(folder)
    got = read_preset(pt)
    dialogue = np.random.default_rng(0).integers(0, 2048, (17, 10))
    dialogue[0] = 3

    def continue_with(persona) -> np.ndarray:  # type: ignore[no-untyped-def]
        rows = [np.concatenate([persona.rows(), dialogue], axis=1)]
        prompt = rows[0].shape[1] - 6
        return run_batch(
            lm, Sampler(lm, GenerateConfig()), rows, prompt, rows[0].shape[1], [5], None, persona.voice_embeddings
        )

    from_codes = continue_with(make_persona("", None, codes))
    from_preset = continue_with(make_persona("", None, got.codes, got.embeddings))
    assert (from_preset[:, 1:9, : VOICE_FRAMES - 3] == -1).all()  # codes a preset does not hold, never read
    np.testing.assert_array_equal(from_codes[:, :, VOICE_FRAMES - 3 :], from_preset[:, :, VOICE_FRAMES - 3 :])
