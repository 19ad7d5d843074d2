"""Speaker adaptation of pocketsphinx (backend.data.annotate.mllr): the model files as read, the MLLR estimate
on frames drawn from a known transform, the transform file as pocketsphinx applies it, and the WER it saves on
held-out piper speech."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soxr

from backend.core.errors import StudioError
from backend.core.spec import SAMPLE_RATE
from backend.data.annotate.measure import scoring_form, word_errors
from backend.data.annotate.mllr import MllrStatistics, features, write_mllr
from backend.data.annotate.run import AnnotateConfig, annotate_audio, make_engine
from backend.data.annotate.sphinx import PocketsphinxEngine
from backend.data.annotate.sphinx_model import load_model, model_folder
from backend.demo.heldout_speech import heldout_dialogues


def test_the_model_files_are_read_as_pocketsphinx_ships_them() -> None:
    model = load_model()
    assert model.means.shape == model.variances.shape == (42, 3, 128, 13)  # 42 CI phones, 3 streams, 128 densities
    assert {"SIL", "AA", "ZH", "+NSN+"} <= set(model.codebooks) and len(model.codebooks) == 42
    assert (model.variances > 0).all()
    # Each senone's weights over its codebook sum to about 1 in every stream (less the quantisation floor):
    # a misread offset or step would give sums far from 1.
    sums = np.exp(model.log_weights).sum(axis=1)
    assert sums.shape == (3, 5126) and ((sums > 0.85) & (sums < 1.01)).all(), (sums.min(), sums.max())


@pytest.mark.parametrize("name, keep", [("sendump", -100), ("means", 200), ("mdef", 20)])
def test_a_damaged_model_file_is_named(tmp_path: Path, name: str, keep: int) -> None:
    folder = tmp_path / "en-us"
    shutil.copytree(model_folder(), folder)
    (folder / name).write_bytes((folder / name).read_bytes()[:keep])  # cut short
    with pytest.raises(StudioError, match=name):
        load_model(folder)


def _frames_from(model, a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator):
    """Frames drawn from the model's CI senones (senone = 3 x codebook + state) with every mean moved to
    a @ mu + b, and their (frame, phone, senone) states."""
    phones = [p for p in model.codebooks if p not in ("SIL", "+NSN+", "+SPN+")]
    frames, states = np.zeros((n, 3, 13)), []
    for t in range(n):
        phone = phones[rng.integers(len(phones))]
        cb = model.codebooks[phone]
        senone = 3 * cb + int(rng.integers(3))
        for f in range(3):
            weights = np.exp(model.log_weights[f, :, senone])
            d = rng.choice(len(weights), p=weights / weights.sum())
            mean = a[f] @ model.means[cb, f, d] + b[f]
            frames[t, f] = mean + np.sqrt(model.variances[cb, f, d]) * rng.standard_normal(13)
        states.append((t, phone, senone))
    return frames, states


def test_mllr_recovers_a_speakers_transform() -> None:
    model = load_model()
    rng = np.random.default_rng(0)
    a = np.stack([np.eye(13) * 0.97 + 0.02 * rng.standard_normal((13, 13)) for _ in range(3)])
    b = 0.3 * np.sqrt(model.variances.mean(axis=(0, 2)))  # a shift of about a third of a standard deviation
    frames, states = _frames_from(model, a, b, 6000, rng)
    stats = MllrStatistics(model)
    stats.add(frames, states + [(0, "SIL", 96), (10**6, "AA", 6)])  # silence and frames past the end are left out
    assert stats.frames == 6000
    a_hat, b_hat = stats.solve(prior=1.0)
    means = model.means.reshape(-1, 3, 13)

    def moved(a_: np.ndarray, b_: np.ndarray) -> np.ndarray:
        return np.einsum("fij,gfj->gfi", a_, means) + b_

    truth = moved(a, b)
    left = np.abs(moved(a_hat, b_hat) - truth).mean()
    before = np.abs(means - truth).mean()
    assert left < 0.35 * before, (left, before)


def test_features_are_deltas_of_mean_normalised_cepstra() -> None:
    cepstra = np.arange(40, dtype=float)[:, None] * np.ones(13) + 5.0  # a ramp: slope 1 per frame
    f = features(cepstra)
    assert f.shape == (40, 3, 13)
    assert np.allclose(f[:, 0].mean(axis=0), 0.0)
    assert np.allclose(f[5:-5, 1], 4.0)  # c[t+2] - c[t-2]
    assert np.allclose(f[5:-5, 2], 0.0)  # a ramp has no second difference
    assert np.allclose(f[0, 1], 2.0)  # the first frame is repeated before the start


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    d = heldout_dialogues(1, seed=7)[0]
    return soxr.resample(d.audio[0], SAMPLE_RATE, 16_000).astype(np.float32)


def test_the_transform_file_is_what_pocketsphinx_applies(speech: np.ndarray, tmp_path: Path) -> None:
    engine = PocketsphinxEngine(adapt=False)

    def words(**options) -> list[str]:
        return [s.word for s in engine._decode(engine._decoder(**options), speech)]

    plain = words()
    identity = tmp_path / "identity.mllr"
    write_mllr(identity, np.stack([np.eye(13)] * 3), np.zeros((3, 13)))
    assert words(mllr=str(identity)) == plain
    moved = tmp_path / "moved.mllr"
    write_mllr(moved, np.stack([np.eye(13)] * 3), np.full((3, 13), 3.0))
    assert words(mllr=str(moved)) != plain


def test_adaptation_lowers_errors_on_held_out_speech() -> None:
    dialogues = heldout_dialogues(2, seed=7)
    errors = {}
    for adapt in (False, True):
        cfg = AnnotateConfig(adapt=adapt)
        engine = make_engine(cfg)
        assert engine.describe()["speaker_adaptation"] == ("mllr" if adapt else "none")
        errors[adapt] = 0
        for d in dialogues:
            found = annotate_audio(engine, d.audio, cfg).words
            for s in "AB":
                errors[adapt] += word_errors(
                    [scoring_form(w.word) for w in d.words if w.speaker == s],
                    [scoring_form(w.word) for w in found if w.speaker == s],
                )
    assert errors[True] < errors[False], errors
