"""Continuations on the tiny models: the prompt is the reference, delays match the training forward pass,
seeds reproduce, dep_q 8 reads the user stream from the reference, files decode to stereo WAV."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from figure_helpers import png_size
from train_helpers import reset_accelerate, write_dataset, write_model, write_run

from backend.core.errors import InputError
from backend.core.spec import CARD, EPAD_ID, FRAME_SIZE, PAD_ID, TEXT_CARD
from backend.dataset.codec import decode
from backend.dataset.read import load_row
from backend.dataset.spm import train_spm
from backend.dataset.training_view import training_rows
from backend.finetune.trainer import train
from backend.inference.generate import (
    GenerateConfig,
    decode_continuation,
    generate,
    load_continuation,
    main,
    timed_transcript,
)
from backend.models import checkpoints
from backend.models.export import ExportConfig, export_checkpoint
from backend.models.loading import load_model
from backend.models.source import random_mimi, save_lm, save_mimi, tiny_mimi_config
from backend.models.text_tokenizer import load_spm
from backend.models.weights import lm_kwargs_of, load_lm

LENGTHS = [30, 26, 20]
P, G = 6, 10


@pytest.fixture(autouse=True, scope="module")
def one_thread():  # type: ignore[no-untyped-def]
    """A step of the tiny LM is a few small kernels: one thread is faster on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generate")
    return {
        "model16": write_model(root / "model16", dep_q=16, seed=1),
        "model8": write_model(root / "model8", dep_q=8, seed=2),
        "data": write_dataset(root / "data", LENGTHS, seed=5),
    }


def run(assets: dict[str, Path], model: str = "model16", **overrides: Any) -> list:
    cfg = GenerateConfig(
        **(
            {
                "model": str(assets[model]),
                "dataset": assets["data"],
                "prompt_frames": P,
                "gen_frames": G,
                "device": "cpu",
                "batch_size": 3,
                "output": None,
            }
            | overrides
        )
    )
    return generate(cfg)


def reference_rows(assets: dict[str, Path], dialogue_id: str, main: str = "A") -> np.ndarray:
    row = load_row(assets["data"], dialogue_id)
    return training_rows(row[main], row["B" if main == "A" else "A"])


def test_prompt_is_the_reference_and_shapes_are_right(assets: dict[str, Path], tmp_path: Path) -> None:
    results = run(assets, output=tmp_path / "out", main_speaker="B")
    assert [c.dialogue_id for c in results] == ["train/d000", "train/d001", "train/d002"]
    for c in results:
        ref = reference_rows(assets, c.dialogue_id, main="B")
        assert c.tokens.shape == (17, P + G) and c.tokens.dtype == np.int64
        np.testing.assert_array_equal(c.reference, ref[:, : P + G])
        np.testing.assert_array_equal(c.tokens[:, :P], ref[:, :P])
        generated = c.tokens[:, P:]
        assert (generated != ref[:, P : P + G]).mean() > 0.5  # sampled, not copied
        assert ((0 <= generated[0]) & (generated[0] < TEXT_CARD)).all()
        assert ((0 <= generated[1:]) & (generated[1:] < CARD)).all()
        back = load_continuation(tmp_path / "out" / f"{c.dialogue_id}.npz")
        np.testing.assert_array_equal(back.tokens, c.tokens)
        np.testing.assert_array_equal(back.reference, c.reference)
        assert (back.prompt_frames, back.main_speaker, back.metadata["user_stream"]) == (P, "B", "sampled")


def sharp_depformer(source: Path, target: Path) -> Path:
    """The model with its depformer token embeddings scaled up: each codebook's prediction then hinges
    on the token fed from the previous codebook, so conditioning on a wrong one changes the argmax."""
    lm = load_lm(source)
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if name.startswith(("depformer_emb.", "depformer_text_emb.")):
                p.mul_(30)
    return save_lm(lm, lm_kwargs_of(source), target)


@pytest.mark.parametrize("model", ["model16", "model8"])
def test_greedy_continuation_is_what_the_training_forward_predicts(
    assets: dict[str, Path], model: str, tmp_path: Path
) -> None:
    """Each greedy token is the argmax of `LMModel.forward` (the training path, which applies the delays
    itself) run on the whole output: generation conditions every token exactly as training does."""
    sharp = sharp_depformer(assets[model], tmp_path / "sharp")
    results = run(assets | {"sharp": sharp}, "sharp", text_temperature=0, audio_temperature=0, gen_frames=14)
    lm = load_lm(sharp)
    for c in results:
        with torch.no_grad():
            out = lm(torch.from_numpy(c.tokens)[None])
        text = out.text_logits[0, 0].argmax(-1).numpy()
        audio, valid = out.logits[0].argmax(-1).numpy(), out.mask[0].numpy()
        np.testing.assert_array_equal(c.tokens[0, P:], text[P:])
        rows = lm.dep_q
        sampled = valid[:, P:]  # the last frame of a delayed codebook has no prediction in a forward pass
        assert sampled.sum() >= rows * 13
        np.testing.assert_array_equal(c.tokens[1 : 1 + rows, P:][sampled], audio[:, P:][sampled])
        if model == "model8":  # the user stream comes from the reference, everywhere
            np.testing.assert_array_equal(c.tokens[9:], c.reference[9:])


def test_seeds_reproduce_and_batching_does_not_matter(assets: dict[str, Path]) -> None:
    first = run(assets, seed=7)
    again = run(assets, seed=7, batch_size=1)  # per-dialogue generators: batch composition is irrelevant
    other = run(assets, seed=8)
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a.tokens, b.tokens)
        assert (a.tokens[:, P:] != c.tokens[:, P:]).mean() > 0.5
    greedy = [
        run(assets, dialogues=["train/d002"], seed=s, text_temperature=0, audio_temperature=0)[0].tokens for s in (1, 2)
    ]
    np.testing.assert_array_equal(*greedy)


def test_dep_q_8_reads_the_user_stream_and_stops_with_the_reference(assets: dict[str, Path]) -> None:
    results = run(assets, "model8", gen_frames=40, start_frame=2)
    assert [c.generated_frames for c in results] == [n - 2 - P for n in LENGTHS]
    for c in results:
        ref = reference_rows(assets, c.dialogue_id)[:, 2:]
        np.testing.assert_array_equal(c.reference, ref)
        np.testing.assert_array_equal(c.tokens[:, :P], ref[:, :P])
        np.testing.assert_array_equal(c.tokens[9:], ref[9:])
        assert (c.tokens[1:9, P:] != ref[1:9, P:]).mean() > 0.5
        assert c.metadata["user_stream"] == "reference"


def test_files_decode_to_stereo_wav_and_a_timed_transcript(assets: dict[str, Path], tmp_path: Path) -> None:
    mimi_dir = tmp_path / "mimi"
    mimi_cfg = tiny_mimi_config()
    save_mimi(random_mimi(mimi_cfg, seed=0), mimi_cfg, mimi_dir)
    sp_path = train_spm(
        ["hello there how are you", "fine thanks and you", "good bye now"] * 5, tmp_path / "sp.model", vocab_size=300
    )
    assert (
        main(
            [
                "--model",
                str(assets["model16"]),
                "--dataset",
                str(assets["data"]),
                "--dialogues",
                "train/d002",
                "--prompt-frames",
                str(P),
                "--gen-frames",
                "4",
                "--device",
                "cpu",
                "--output",
                str(tmp_path / "out"),
                "--mimi",
                str(mimi_dir),
                "--tokenizer",
                str(sp_path),
            ]
        )
        == 0
    )
    c = load_continuation(tmp_path / "out" / "train" / "d002.npz")
    assert c.files == {
        "tokens": tmp_path / "out/train/d002.npz",
        "wav": tmp_path / "out/train/d002.continuation.wav",
        "reference_wav": tmp_path / "out/train/d002.reference.wav",
        "spectrogram": tmp_path / "out/train/d002.spectrogram.png",
        "transcript": tmp_path / "out/train/d002.transcript.json",
    }
    assert png_size(c.files["spectrogram"]) == (1200, 550)  # reference and continuation side by side
    wav, sr = sf.read(str(c.files["wav"]), always_2d=True)
    assert sr == 24_000 and wav.shape == ((P + 4) * FRAME_SIZE, 2)
    # Left = Moshi's codebooks, right = the user's, decoded as one batch.
    mimi = random_mimi(mimi_cfg, seed=0)
    expected = decode(mimi, np.stack([c.tokens[1:9], c.tokens[9:17]]))
    np.testing.assert_allclose(wav.T, np.clip(expected, -1, 1), atol=1 / 32767 + 1e-6)
    ref_wav, _ = sf.read(str(c.files["reference_wav"]), always_2d=True)
    np.testing.assert_allclose(ref_wav.T, np.clip(decode_continuation(mimi, c.reference), -1, 1), atol=1 / 32767 + 1e-6)
    words = json.loads(c.files["transcript"].read_text())
    assert set(words) == {"continuation", "reference", "prompt_end"} and words["prompt_end"] == P / 12.5
    assert (tmp_path / "out" / "generate_config.json").is_file()


def test_timed_transcript_joins_pieces_into_words(tmp_path: Path) -> None:
    sp = load_spm(train_spm(["hello there how are you", "fine thanks"] * 5, tmp_path / "sp.model", vocab_size=300))
    row = np.full(30, PAD_ID)
    frame, expected = 2, []
    for word in ("hello", "thanks"):
        ids = sp.encode(word)  # "▁hello" or "▁hel" "lo": the first piece carries the boundary
        row[frame - 1] = EPAD_ID
        row[frame : frame + len(ids)] = ids
        expected.append({"word": word, "start": frame / 12.5, "end": (frame + len(ids)) / 12.5})
        frame += len(ids) + 5
    row[frame] = TEXT_CARD + 5  # outside the tokenizer: skipped
    assert timed_transcript(row, sp) == expected


def test_bad_requests_name_the_problem(assets: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="train/d002 has 20 frames, fewer than start_frame \\+ prompt_frames = 21"):
        run(assets, prompt_frames=21)
    with pytest.raises(InputError, match="no dialogue 'nope'"):
        run(assets, dialogues=["nope"])
    assert main(["--model", str(assets["model16"]), "--dataset", str(assets["data"]), "--prompt-frames", "0"]) == 2


def test_lora_checkpoint_generates_with_the_merged_weights(assets: dict[str, Path], tmp_path: Path) -> None:
    """A LoRA run's checkpoint (adapters only, as the trainer writes them) is merged onto its base."""
    run_dir = tmp_path / "run"
    write_run(
        run_dir,
        base_model=str(assets["model16"]),
        train_data=str(assets["data"]),
        mode="lora",
        lora_rank=2,
        max_steps=1,
        lr=1e-2,
    )
    try:
        assert train(run_dir) == "finished"
    finally:
        reset_accelerate()
    ckpt = checkpoints.latest_checkpoint(run_dir)
    assert ckpt is not None and (ckpt / "lora.safetensors").is_file()
    merged = load_model(str(ckpt)).state_dict()
    exported = load_lm(
        export_checkpoint(ExportConfig(checkpoint=ckpt, output=tmp_path / "export", clean=False, dtype="float32"))
    ).state_dict()
    base = load_lm(assets["model16"]).state_dict()
    assert set(merged) == set(base)
    for k in merged:
        torch.testing.assert_close(merged[k], exported[k])
    assert any(not torch.equal(merged[k], base[k]) for k in merged)
    (c,) = run(assets | {"lora": ckpt}, "lora", dialogues=["train/d000"], gen_frames=2)
    assert c.tokens.shape == (17, P + 2)
