"""Training and generation together: the tiny dep_q 16 model, trained by the real trainer until it
memorises one dialogue, continues that dialogue greedily from a prompt and reproduces the following
frames of all 17 streams. Training applies the delays in `LMModel.forward`, generation in its own
streaming loop: a delay or shift wrong on either side (or in the training view, the checkpoint or the
undelaying of the output) puts the tokens on the wrong frames and the match rate collapses."""

from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import trained_checkpoint, write_dataset, write_model

from backend.inference.generate import GenerateConfig, generate

FRAMES = 40  # one 3.2 s dialogue
PROMPT = 13


def rates(tokens: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    same = tokens[:, PROMPT:] == reference[:, PROMPT:]
    return {"text": same[0].mean(), "moshi": same[1:9].mean(), "user": same[9:].mean()}


@pytest.mark.slow
def test_memorised_dialogue_is_continued_token_for_token(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model's small kernels: one thread is faster on a shared machine
    try:
        model = write_model(tmp_path / "model", dep_q=16)
        # Random text pieces between PADs and random audio codes from 8 entries per codebook (learnable in
        # a few dozen steps; chance level stays 1/8). The layout is the real one: [9, T] per speaker.
        data = write_dataset(tmp_path / "data", [FRAMES], seed=3, audio_vocab=8)
        checkpoint = trained_checkpoint(
            tmp_path / "run",
            base_model=str(model),
            train_data=str(data),
            main_speaker="A",
            max_frames=FRAMES,
            min_frames=FRAMES,
            max_steps=70,
            lr=4e-3,
            weight_decay=0.0,
            acoustic_weight=10.0,
            log_every=10,
        )

        def continuation(source: Path) -> dict[str, float]:
            # Up to the dialogue's second-to-last frame: training never has a target for the acoustic
            # codebooks of the last frame (their delayed column lies past the end of the example).
            (c,) = generate(
                GenerateConfig(
                    model=str(source),
                    dataset=data,
                    prompt_frames=PROMPT,
                    gen_frames=FRAMES - 1 - PROMPT,
                    text_temperature=0,
                    audio_temperature=0,
                    device="cpu",
                    output=None,
                )
            )
            np.testing.assert_array_equal(c.tokens[:, :PROMPT], c.reference[:, :PROMPT])
            return rates(c.tokens, c.reference)

        untrained, trained = continuation(model), continuation(checkpoint)
    finally:
        torch.set_num_threads(threads)
    assert max(untrained["moshi"], untrained["user"]) < 0.3, f"the untrained model already matches: {untrained}"
    assert min(trained.values()) > 0.9, f"greedy continuation of the memorised dialogue: {trained}"
