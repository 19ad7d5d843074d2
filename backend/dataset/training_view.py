"""What the model sees in training (SPEC.md "Training view"), in numpy for display and tests.

A dataset row holds, per speaker, [9, T] undelayed: text, then codebooks 0..7. One speaker plays
Moshi (main), the other the user: 17 rows = main text, main codebooks, other codebooks. moshi's
`LMModel.forward` applies the delays itself; `delayed_input` mirrors it for the timeline.
"""

import numpy as np

from backend.core.spec import CARD, DELAYS, TEXT_CARD


def training_rows(main: np.ndarray, other: np.ndarray) -> np.ndarray:
    """[17, T]: main text + main codebooks 0..7 + other codebooks 0..7 (the other's text is not modelled)."""
    if main.shape != other.shape or main.shape[0] != 9:
        raise ValueError(f"expected two [9, T] arrays of one length, got {main.shape} and {other.shape}")
    return np.concatenate([main, other[1:]], axis=0)


def initial_column() -> np.ndarray:
    return np.array([TEXT_CARD] + [CARD] * 16, dtype=np.int64)


def delayed_input(rows: np.ndarray, delays: list[int] = DELAYS) -> np.ndarray:
    """[17, T+1]: the initial column, then each row shifted right by its delay (start filled with
    the initial token), exactly as `LMModel.forward` builds its input sequence."""
    k, t = rows.shape
    if k != len(delays):
        raise ValueError(f"{k} rows but {len(delays)} delays")
    init = initial_column()[:k]
    out = np.empty((k, t + 1), dtype=np.int64)
    out[:, 0] = init
    for i, d in enumerate(delays):
        out[i, 1 : 1 + d] = init[i]
        out[i, 1 + d :] = rows[i, : t - d]
    return out
