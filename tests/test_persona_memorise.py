"""Personas end to end on tokens (issue 15): two dialogues that are identical up to the prompt's end and differ
only in Moshi's reply, each with its own persona (voice codes + role text). The tiny dep_q 16 model, trained by
the real trainer with the prefixes from the dataset's personas.json, continues the same prompt with each
persona's own reply: only the prefix tells the two apart, so training and continuation must build and place it
identically (models/persona.py), and the masked prefix must not be what is learnt."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from train_helpers import speaker_tokens, trained_checkpoint, write_model

from backend.dataset.build import SCHEMA, shard_name
from backend.dataset.personas import save_personas
from backend.inference.generate import GenerateConfig, generate
from backend.models.persona import Persona

FRAMES = 32
PROMPT = 12


def twin_dataset(folder: Path) -> Path:
    rng = np.random.default_rng(5)
    user = speaker_tokens(rng, FRAMES, audio_vocab=8)
    shared = speaker_tokens(rng, FRAMES, audio_vocab=8)
    rows: dict[str, list] = {"dialogue_id": [], "A": [], "B": []}
    for name in ("barista", "librarian"):
        moshi = speaker_tokens(rng, FRAMES, audio_vocab=8)
        moshi[:, :PROMPT] = shared[:, :PROMPT]  # same prompt; the replies differ
        rows["dialogue_id"].append(f"train/{name}")
        rows["A"].append(moshi.tolist())
        rows["B"].append(user.tolist())
    folder.mkdir(parents=True)
    pq.write_table(pa.table(rows, schema=SCHEMA), folder / shard_name("train", 1, 1))
    return folder


@pytest.mark.slow
def test_each_persona_continues_with_its_own_reply(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = twin_dataset(tmp_path / "data")
        rng = np.random.default_rng(9)
        save_personas(
            data,
            {
                (f"train/{name}", "A"): Persona(
                    name, tuple(int(i) for i in rng.integers(10, 300, 5)), rng.integers(0, 8, size=(8, 6))
                )
                for name in ("barista", "librarian")
            },
        )
        checkpoint = trained_checkpoint(
            tmp_path / "run",
            base_model=str(write_model(tmp_path / "model", dep_q=16)),
            train_data=str(data),
            main_speaker="A",
            max_frames=FRAMES,
            min_frames=FRAMES,
            max_steps=80,
            lr=4e-3,
            weight_decay=0.0,
            acoustic_weight=10.0,
            batch_size=2,
            log_every=20,
        )
        results = generate(
            GenerateConfig(
                model=str(checkpoint),
                dataset=data,
                prompt_frames=PROMPT,
                gen_frames=FRAMES - 1 - PROMPT,
                text_temperature=0,
                audio_temperature=0,
                device="cpu",
                output=None,
            )
        )
        without = generate(
            GenerateConfig(
                model=str(checkpoint),
                dataset=data,
                prompt_frames=PROMPT,
                gen_frames=FRAMES - 1 - PROMPT,
                text_temperature=0,
                audio_temperature=0,
                device="cpu",
                output=None,
                dataset_personas=False,
            )
        )
    finally:
        torch.set_num_threads(threads)
    by_id = {c.dialogue_id: c for c in results}
    assert [c.metadata["persona_frames"] for c in results] == [5 + 6 + 6 + 5] * 2  # 6 voice + 6 + 5 text + 6, - 1
    for mine, other in (("barista", "librarian"), ("librarian", "barista")):
        c = by_id[f"train/{mine}"]
        np.testing.assert_array_equal(c.tokens[:, :PROMPT], c.reference[:, :PROMPT])
        own = (c.tokens[:9, PROMPT:] == c.reference[:9, PROMPT:]).mean()
        others = (c.tokens[:9, PROMPT:] == by_id[f"train/{other}"].reference[:9, PROMPT:]).mean()
        assert own > 0.9 and others < 0.5, f"{mine}: own reply {own:.2f}, the other persona's {others:.2f}"
    # Without the prefixes both continuations are the same: the prompt alone cannot tell the personas apart.
    np.testing.assert_array_equal(without[0].tokens, without[1].tokens)
