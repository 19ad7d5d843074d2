"""The shipped demo codec (assets/demo_mimi): loads with moshi's own loader, keeps SPEC.md's frame
layout, reproduces its stored reconstruction, and is what the demo workspace uses."""

import json

import numpy as np
import torch
from moshi.models import loaders

from backend.core.spec import FRAME_RATE, FRAME_SIZE, NUM_CODEBOOKS, SAMPLE_RATE
from backend.demo.codec_training import reference_clip
from backend.models.source import DEMO_MIMI_ASSET, MIMI_CONFIG, MIMI_WEIGHTS


def shipped_mimi():
    cfg = json.loads((DEMO_MIMI_ASSET / MIMI_CONFIG).read_text())
    return loaders.get_mimi(DEMO_MIMI_ASSET / MIMI_WEIGHTS, mimi_config=cfg), cfg


def test_layout_matches_the_spec() -> None:
    mimi, cfg = shipped_mimi()
    assert (mimi.sample_rate, mimi.frame_rate, mimi.frame_size) == (SAMPLE_RATE, FRAME_RATE, FRAME_SIZE)
    assert mimi.num_codebooks == NUM_CODEBOOKS and mimi.cardinality == 2048
    assert (DEMO_MIMI_ASSET / MIMI_WEIGHTS).stat().st_size < 8 * 2**20  # a few MB in the repository
    with torch.no_grad():
        codes = mimi.encode(torch.zeros(1, 1, 25 * FRAME_SIZE))
        assert codes.shape == (1, NUM_CODEBOOKS, 25)
        assert mimi.decode(codes).shape == (1, 1, 25 * FRAME_SIZE)


def test_reproduces_the_stored_reconstruction() -> None:
    mimi, _ = shipped_mimi()
    stored = np.load(DEMO_MIMI_ASSET / "reference.npz")
    with torch.no_grad():
        codes = mimi.encode(torch.from_numpy(reference_clip())[None, None])[0].numpy()
        audio = mimi.decode(torch.from_numpy(stored["codes"].astype(np.int64))[None])[0, 0].numpy()
    assert (codes == stored["codes"]).mean() > 0.97  # a near-tie may flip a code on another CPU
    assert np.abs(audio - stored["audio"].astype(np.float32)).max() < 5e-3
    assert np.abs(audio).max() > 0.01  # it decodes to sound, not silence


def test_demo_workspace_uses_the_trained_codec(demo_workspace) -> None:
    assert json.loads((demo_workspace.demo_mimi / MIMI_CONFIG).read_text()) == json.loads(
        (DEMO_MIMI_ASSET / MIMI_CONFIG).read_text()
    )
    assert (demo_workspace.demo_mimi / MIMI_WEIGHTS).read_bytes() == (DEMO_MIMI_ASSET / MIMI_WEIGHTS).read_bytes()
