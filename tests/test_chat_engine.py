"""The chat engine on its own: frames in, Moshi's frames out; sessions reset cleanly; wrong models refused."""

import numpy as np
import pytest
from chat_helpers import chat_config, speaking_lm
from train_helpers import write_model

from backend.core.errors import ConfigError, InputError
from backend.core.spec import FRAME_SIZE, SAMPLE_RATE
from backend.data.audio_io import load_stereo
from backend.inference.chat_engine import ChatEngine


@pytest.fixture(scope="module")
def engine(demo_workspace, tmp_path_factory) -> ChatEngine:
    model = speaking_lm(demo_workspace.demo_lm, 400, tmp_path_factory.mktemp("engine") / "lm")
    return ChatEngine(chat_config(demo_workspace, model))


def conversation(engine: ChatEngine, speech: np.ndarray) -> tuple[list, list[str]]:
    engine.reset()
    outs = [engine.step(speech[i : i + FRAME_SIZE]) for i in range(0, len(speech) - FRAME_SIZE + 1, FRAME_SIZE)]
    return [o.pcm for o in outs], [o.text for o in outs]


def test_frames_in_frames_out_and_reset_is_clean(engine, demo_workspace) -> None:
    audio, _ = load_stereo(sorted(demo_workspace.raw.glob("demo_cafe.*"))[0])
    speech = audio[0, : 3 * SAMPLE_RATE].astype(np.float32)  # speaker A opens the dialogue
    pcm, text = conversation(engine, speech)
    assert pcm[0] is None and all(p is not None and p.shape == (FRAME_SIZE,) for p in pcm[1:])
    assert any(text)
    assert all(c.isprintable() for c in "".join(text)) and "<s>" not in "".join(text)
    # A second conversation after reset starts from the same state (same seed, empty caches): identical output.
    pcm2, text2 = conversation(engine, speech)
    assert text2 == text
    np.testing.assert_allclose(np.concatenate(pcm2[1:]), np.concatenate(pcm[1:]), atol=1e-5)
    # A different conversation is not a replay: what the user says changes what Moshi says.
    noise = np.random.default_rng(0).normal(0, 0.3, speech.shape).astype(np.float32)
    pcm3, _ = conversation(engine, noise)
    assert np.abs(np.concatenate(pcm3[1:]) - np.concatenate(pcm[1:])).max() > 1e-3


def test_a_model_with_the_user_stream_is_refused(demo_workspace, tmp_path) -> None:
    model = write_model(tmp_path / "dep16", dep_q=16)
    with pytest.raises(InputError, match="dep_q 16.*clean"):
        ChatEngine(chat_config(demo_workspace, model))


@pytest.mark.parametrize(
    "setting,value",
    [
        ("text_temperature", float("nan")),
        ("audio_temperature", -5.0),
        ("text_top_k", 0),
        ("audio_top_k", 2049),
        ("max_session_seconds", 1e12),
        ("max_lag_ms", float("inf")),
        ("queue_seconds", -1.0),
        ("queue_seconds", 1e9),
    ],
)
def test_settings_out_of_range_are_refused_by_name(demo_workspace, setting, value) -> None:
    with pytest.raises(ConfigError, match=setting):
        chat_config(demo_workspace, demo_workspace.demo_lm, **{setting: value})


def test_bfloat16_runs_the_lm_in_half_the_memory(demo_workspace) -> None:
    """A 7B model on CPU only fits in bfloat16: the engine takes the dtype asked for and still talks."""
    import torch

    engine = ChatEngine(chat_config(demo_workspace, demo_workspace.demo_lm, dtype="bfloat16"))
    assert {p.dtype for p in engine.lm_gen.lm_model.parameters()} == {torch.bfloat16}
    outs = [engine.step(np.zeros(FRAME_SIZE, dtype=np.float32)) for _ in range(3)]
    assert all(o.pcm is not None and np.isfinite(o.pcm).all() for o in outs[1:])
