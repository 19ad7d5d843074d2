"""The timeline's training view must be exactly the input sequence moshi's LMModel builds."""

import numpy as np
import pytest
import torch
from moshi.models.lm_utils import _delay_sequence

from backend.core.spec import CARD, DELAYS, TEXT_CARD
from backend.dataset.training_view import delayed_input, initial_column, training_rows


def test_delayed_input_matches_moshi() -> None:
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 2048, size=(17, 11))
    init = torch.tensor(initial_column())[None, :, None]
    expected = torch.cat([init, _delay_sequence(DELAYS, torch.tensor(rows)[None], init)], dim=2)[0].numpy()
    np.testing.assert_array_equal(delayed_input(rows), expected)


def test_delays_shift_acoustic_codebooks_by_one_frame() -> None:
    rows = np.arange(17 * 5).reshape(17, 5)
    out = delayed_input(rows)
    assert out[:, 0].tolist() == [TEXT_CARD] + [CARD] * 16
    np.testing.assert_array_equal(out[0, 1:], rows[0])  # text: no delay
    np.testing.assert_array_equal(out[1, 1:], rows[1])  # semantic codebook: no delay
    assert out[2, 1] == CARD and out[2, 2:].tolist() == rows[2, :4].tolist()  # acoustic: one frame late


def test_training_rows_drop_the_other_text() -> None:
    main, other = np.zeros((9, 4), int), np.ones((9, 4), int)
    rows = training_rows(main, other)
    assert rows.shape == (17, 4) and rows[:9].sum() == 0 and rows[9:].min() == 1
    with pytest.raises(ValueError):
        training_rows(main, np.ones((9, 5), int))
