"""Personas in the dataset (sidecar) and in training: the prefix goes in front of each example and no loss
component sees it (issue 15)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from moshi.models.lm import LMOutput
from train_helpers import reset_accelerate, write_dataset, write_model, write_run

from backend.core.errors import InputError
from backend.dataset.personas import load_personas, save_personas, sidecar_path
from backend.finetune.data import collate
from backend.finetune.loss import LossWeights, compute_loss
from backend.finetune.prefix import with_prefixes
from backend.finetune.trainer import train
from backend.models.persona import build_prefix, lm_rows, make_persona
from backend.models.weights import load_lm


def a_persona(seed: int, voice_frames: int = 5, text: str = "A barista."):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    persona = make_persona("", None, rng.integers(0, 8, size=(8, voice_frames)))
    return type(persona)(text, tuple(int(i) for i in rng.integers(10, 300, size=4)), persona.voice)


def sliced(out: LMOutput, start: int, stop: int) -> LMOutput:
    return LMOutput(
        out.logits[..., start:stop, :],
        out.mask[..., start:stop],
        out.text_logits[..., start:stop, :],
        out.text_mask[..., start:stop],
    )


def test_sidecar_round_trip_and_refusals(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", [8])
    assert load_personas(data) == {}  # a dataset without personas loads as before
    p = a_persona(0)
    save_personas(data, {("train/d000", "A"): p})
    back = load_personas(data)[("train/d000", "A")]
    assert back.text == p.text and back.text_ids == p.text_ids and np.array_equal(back.voice, p.voice)
    body = json.loads(sidecar_path(data).read_text())
    body["personas"]["train/d000"]["A"]["voice"][0][0] = 2048
    sidecar_path(data).write_text(json.dumps(body))
    with pytest.raises(InputError, match="train/d000/A: voice codes must be integers in 0..2047"):
        load_personas(data)
    sidecar_path(data).write_text("{}")
    with pytest.raises(InputError, match="not a personas file"):
        load_personas(data)
    assert sidecar_path(tmp_path / "one.parquet") == tmp_path / "one.personas.json"


@pytest.mark.parametrize("keep_text", [False, True])
def test_prefix_is_outside_every_loss_component(tmp_path: Path, keep_text: bool) -> None:
    model = load_lm(write_model(tmp_path / "model", dep_q=16)).eval()
    rng = np.random.default_rng(1)
    rows = [np.concatenate([rng.integers(3, 200, size=(1, n)), rng.integers(0, 2048, size=(16, n))]) for n in (10, 7)]
    codes = collate(rows)
    prefix = lm_rows(build_prefix(a_persona(2).voice, a_persona(2).text_ids))  # [17, P]
    inputs, targets = with_prefixes(codes, [10, 7], [prefix, None], keep_text_loss=keep_text)
    p = prefix.shape[1]
    assert inputs.shape == (2, 17, p + 10)
    np.testing.assert_array_equal(inputs[0, :, :p].numpy(), prefix)
    np.testing.assert_array_equal(inputs[0, :, p:].numpy(), rows[0])
    np.testing.assert_array_equal(inputs[1, :, :7].numpy(), rows[1])  # no persona: unchanged, padded after
    assert (targets[0, 1:, :p] == -1).all() and (targets[0, 0, :p] == (inputs[0, 0, :p] if keep_text else -1)).all()
    w = LossWeights()
    with torch.no_grad():
        out = model(inputs[:1])
        with_prefix = compute_loss(out, targets[:1], w, model.text_card, model.card).parts
        alone = compute_loss(sliced(out, p, p + 10), targets[:1, :, p:], w, model.text_card, model.card).parts
    audio_parts = [k for k in alone if "semantic" in k or "acoustic" in k or k == "audio_loss"]
    for key in audio_parts:  # the audio curves are the conversation's only
        assert with_prefix[key] == pytest.approx(float(alone[key]), rel=1e-5), key
    if keep_text:
        assert with_prefix["text_nonpad_loss"] != pytest.approx(float(alone["text_nonpad_loss"]))
    else:
        assert with_prefix["loss"] == pytest.approx(float(alone["loss"]), rel=1e-5)


def test_training_runs_with_a_persona_dataset(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", [12, 12], seed=1, audio_vocab=8)
    save_personas(data, {("train/d000", "A"): a_persona(3), ("train/d001", "B"): a_persona(4, voice_frames=3)})
    run = tmp_path / "run"
    write_run(
        run,
        base_model=str(write_model(tmp_path / "model", dep_q=16)),
        train_data=str(data),
        max_steps=3,
        batch_size=2,
        lr=1e-3,
    )
    try:
        assert train(run) == "finished"
    finally:
        reset_accelerate()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(m["loss"]) for m in log if "event" not in m)


def test_persona_stage_from_the_command_line(tmp_path: Path) -> None:
    import soundfile as sf

    from backend.dataset.personas import main
    from backend.dataset.spm import train_spm
    from backend.demo.dialogues import demo_sentences
    from backend.demo.workspace import DEMO_VOCAB_SIZE
    from backend.models.persona import encode_voice, role_text_ids
    from backend.models.source import random_mimi, save_mimi, tiny_mimi_config
    from backend.models.text_tokenizer import load_spm
    from backend.models.weights import load_mimi

    data = write_dataset(tmp_path / "data", [8, 8])
    mimi_dir = save_mimi(random_mimi(tiny_mimi_config(), seed=2), tiny_mimi_config(), tmp_path / "mimi")
    spm_path = train_spm(demo_sentences(), tmp_path / "spm.model", vocab_size=DEMO_VOCAB_SIZE)
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((3 * 24_000, 2))).astype(np.float32)
    sf.write(tmp_path / "dialogue.wav", stereo, 24_000)
    common = ["--dataset", str(data), "--mimi", str(mimi_dir), "--tokenizer", str(spm_path)]
    assert (
        main(
            [
                *common,
                "--dialogue",
                "train/d001",
                "--speaker",
                "B",
                "--text",
                "You are a librarian.",
                "--voice",
                str(tmp_path / "dialogue.wav"),
                "--voice-channel",
                "B",
                "--voice-start",
                "0.5",
                "--voice-end",
                "2",
            ]
        )
        == 0
    )
    (persona,) = load_personas(data).values()
    assert set(load_personas(data)) == {("train/d001", "B")}
    assert persona.text_ids == tuple(role_text_ids(load_spm(spm_path), "You are a librarian."))
    expected = encode_voice(load_mimi(mimi_dir), stereo[12_000:48_000, 1])
    np.testing.assert_array_equal(persona.voice, expected)
    assert main([*common, "--dialogue", "train/nope", "--text", "x"]) == 2
    assert main([*common, "--dialogue", "train/d001", "--speaker", "B", "--remove"]) == 0
    assert load_personas(data) == {} and not sidecar_path(data).exists()


def test_continuation_prefixes_given_or_stored(tmp_path: Path) -> None:
    import soundfile as sf

    from backend.core.errors import ConfigError
    from backend.dataset.spm import train_spm
    from backend.demo.dialogues import demo_sentences
    from backend.demo.workspace import DEMO_VOCAB_SIZE
    from backend.inference.persona_prompt import batches_by_length, continuation_prefixes
    from backend.models.persona import read_voice, voice_codes
    from backend.models.source import random_mimi, save_mimi, tiny_mimi_config
    from backend.models.text_tokenizer import load_spm
    from backend.models.weights import load_mimi

    data = write_dataset(tmp_path / "data", [8, 8])
    ids = ["train/d000", "train/d001"]
    stored = a_persona(5)
    save_personas(data, {("train/d001", "A"): stored})
    got, embeddings = continuation_prefixes(data, ids, "A", "", "", True, "", "")
    assert embeddings is None
    assert got[0].shape == (17, 0) and np.array_equal(got[1], stored.rows())
    assert all(g.shape == (17, 0) for g in continuation_prefixes(data, ids, "A", "", "", False, "", "")[0])
    assert continuation_prefixes(data, ids, "B", "", "", True, "", "")[0][1].shape == (17, 0)  # A's persona only
    mimi_dir = save_mimi(random_mimi(tiny_mimi_config(), seed=2), tiny_mimi_config(), tmp_path / "mimi")
    spm_path = train_spm(demo_sentences(), tmp_path / "spm.model", vocab_size=DEMO_VOCAB_SIZE)
    wav = tmp_path / "voice.wav"
    sf.write(wav, (0.1 * np.random.default_rng(1).standard_normal(30_000)).astype(np.float32), 24_000)
    given, _ = continuation_prefixes(data, ids, "A", "You are a barista.", str(wav), True, str(spm_path), str(mimi_dir))
    expected = make_persona("You are a barista.", load_spm(spm_path), voice_codes(load_mimi(mimi_dir), wav)).rows()
    assert all(np.array_equal(g, expected) for g in given)  # the given persona wins over the stored one
    assert read_voice(wav).shape == (30_000,)
    with pytest.raises(ConfigError, match="text_prompt"):
        continuation_prefixes(data, ids, "A", "You are a barista.", "", True, "", "")
    with pytest.raises(ConfigError, match="voice_prompt"):
        continuation_prefixes(data, ids, "A", "", str(wav), True, "", "")
    assert batches_by_length([0, 5, 0, 5, 0], 2) == [[0, 2], [4], [1, 3]]
