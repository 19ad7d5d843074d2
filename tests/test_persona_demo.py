"""The persona demo through every stage (issue 15): the barista and librarian dialogues (espeak-ng, the very same
user turn) tokenized with the demo codec, each given its persona (role text + its own voice prompt) by the
personas stage, the tiny model fine-tuned on both; the same user turn continued under each persona gives that
persona's reply and voice (token match against each persona's reference)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import trained_checkpoint, write_model

from backend.dataset.build import DatasetConfig, build_dataset
from backend.dataset.personas import PersonaConfig, set_persona
from backend.dataset.spm import train_spm
from backend.dataset.tokenize_audio import AudioTokenizeConfig, tokenize_audio
from backend.dataset.tokenize_text import TextTokenizeConfig, tokenize_text
from backend.demo.dialogues import demo_sentences
from backend.demo.personas import PERSONA_DIR, PERSONAS, persona_sentences
from backend.demo.workspace import DEMO_VOCAB_SIZE
from backend.inference.generate import GenerateConfig, generate
from backend.models.source import DEMO_MIMI_ASSET

PROMPT = 39  # frames 0..38: the user's turn and the silence after it, identical in both dialogues


@pytest.mark.slow
def test_same_user_turn_continued_under_each_persona(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spm = train_spm(demo_sentences() + persona_sentences(), tmp_path / "spm.model", vocab_size=DEMO_VOCAB_SIZE)
        tokenize_audio(
            AudioTokenizeConfig(
                input_dir=PERSONA_DIR, output_dir=tmp_path / "audio", mimi=str(DEMO_MIMI_ASSET), device="cpu", workers=1
            )
        )
        tokenize_text(
            TextTokenizeConfig(transcripts=PERSONA_DIR, tokenizer=spm, output=tmp_path / "text", audio=PERSONA_DIR)
        )
        data = tmp_path / "dataset"
        build_dataset(DatasetConfig(audio_tokens=tmp_path / "audio", text_tokens=tmp_path / "text", output=data))
        for p in PERSONAS:
            set_persona(
                PersonaConfig(
                    dataset=data,
                    dialogue=f"train/{p.name}",
                    speaker="A",
                    text=p.role,
                    voice=PERSONA_DIR / "voices" / f"{p.name}.wav",
                    mimi=str(DEMO_MIMI_ASSET),
                    tokenizer=str(spm),
                )
            )
        checkpoint = trained_checkpoint(
            tmp_path / "run",
            base_model=str(write_model(tmp_path / "model", dep_q=16)),
            train_data=str(data),
            main_speaker="A",
            max_frames=400,
            min_frames=2,
            max_steps=150,
            lr=4e-3,
            weight_decay=0.0,
            batch_size=2,
            log_every=50,
        )

        def continue_all(**kw: object) -> dict[str, np.ndarray]:
            out = generate(
                GenerateConfig(
                    model=str(checkpoint),
                    dataset=data,
                    prompt_frames=PROMPT,
                    gen_frames=40,
                    text_temperature=0,
                    audio_temperature=0,
                    device="cpu",
                    output=None,
                    **kw,
                )
            )
            return {c.dialogue_id.split("/")[1]: c for c in out}

        with_personas, without = continue_all(), continue_all(dataset_personas=False)
    finally:
        torch.set_num_threads(threads)
    a, b = (with_personas[p.name] for p in PERSONAS)
    np.testing.assert_array_equal(a.reference[:, :PROMPT], b.reference[:, :PROMPT])  # the same user turn
    n = min(a.tokens.shape[1], b.tokens.shape[1])
    rates = {}
    for mine, other in ((a, b), (b, a)):
        own = (mine.tokens[:9, PROMPT:n] == mine.reference[:9, PROMPT:n]).mean(axis=1)
        cross = (mine.tokens[:9, PROMPT:n] == other.reference[:9, PROMPT:n]).mean(axis=1)
        rates[mine.dialogue_id] = (own.round(2).tolist(), cross.round(2).tolist())
    print("per persona, match with its own / the other's reply (text, codebooks 0..7):", rates)
    for own, cross in rates.values():
        assert own[0] > 0.9 and min(own[1:]) > 0.8, rates  # that persona's words and voice (all 8 codebooks)
        assert own[0] > cross[0] and own[1] > cross[1], rates
    # Without the prefix the model has nothing to tell the two apart: both continue the same way.
    x, y = without.values()
    np.testing.assert_array_equal(x.tokens[:, :n], y.tokens[:, :n])
