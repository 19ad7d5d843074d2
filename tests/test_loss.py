"""The training loss on hand-built logits whose answer is computable by hand."""

import math

import pytest
import torch
from moshi.models.lm import LMOutput

from backend.finetune.loss import PARTS, LossWeights, compute_loss

V, CARD = 5, 4  # a tiny text vocabulary (text_card) and codebook size (card)
PAD, EPAD = 3, 0


def ce(a: float, n: int) -> float:
    """CE of logits that are `a` at the target and 0 at the n-1 other entries."""
    return -a + math.log(math.exp(a) + n - 1)


def one_hot_logits(targets: list[int], scores: list[float], n: int) -> torch.Tensor:
    out = torch.zeros(len(targets), n)
    for i, (t, a) in enumerate(zip(targets, scores)):
        if 0 <= t < n:
            out[i, t] = a
    return out


def text_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]:
    """Targets PAD, EPAD, word, PAD, zero token, initial token, masked-out word."""
    targets = [PAD, EPAD, 1, PAD, -1, V, 2]
    scores = [2.0, 1.0, 0.0, 3.0, 9.0, 9.0, 9.0]
    logits = one_hot_logits(targets, scores, V)
    logits[6] = float("nan")  # moshi fills invalid positions with NaN: they must never be touched
    mask = torch.tensor([True] * 6 + [False])
    values = {"pad0": ce(2, V), "epad": ce(1, V), "word": ce(0, V), "pad3": ce(3, V)}
    return logits[None, None], mask[None, None], torch.tensor(targets)[None], values


def audio_out(dep_q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[float]]]:
    """Codebook k has targets [k % CARD, -1 | CARD | masked] and score k / 4 at the target; only the first
    frame counts, except for codebooks 0 and 8 where the second frame (target 1, score 2) counts too."""
    logits = torch.zeros(dep_q, 2, CARD)
    targets = torch.zeros(dep_q, 2, dtype=torch.long)
    mask = torch.ones(dep_q, 2, dtype=torch.bool)
    counted: list[list[float]] = []
    for k in range(dep_q):
        targets[k, 0] = k % CARD
        logits[k, 0, k % CARD] = k / 4
        counted.append([ce(k / 4, CARD)])
        if k % 8 == 0:
            targets[k, 1] = 1
            logits[k, 1, 1] = 2.0
            counted[k].append(ce(2.0, CARD))
        elif k % 3 == 0:
            targets[k, 1] = -1
        elif k % 3 == 1:
            targets[k, 1] = CARD  # the audio initial token
        else:
            mask[k, 1] = False
            logits[k, 1] = float("nan")
    return logits[None], mask[None], targets[None], counted


def run(weights: LossWeights, dep_q: int = 16):  # type: ignore[no-untyped-def]
    text_logits, text_mask, text_targets, values = text_case()
    logits, mask, audio_targets, counted = audio_out(dep_q)
    t = text_targets.shape[1]
    # Audio has 2 frames, text 7: pad the audio side with ignored zero tokens to one [B, 1 + dep_q, T] codes.
    codes = torch.full((1, 1 + dep_q, t), -1, dtype=torch.long)
    codes[:, 0] = text_targets
    codes[:, 1:, :2] = audio_targets
    full_logits = torch.full((1, dep_q, t, CARD), float("nan"))
    full_logits[:, :, :2] = logits
    full_mask = torch.zeros(1, dep_q, t, dtype=torch.bool)
    full_mask[:, :, :2] = mask
    out = LMOutput(full_logits, full_mask, text_logits, text_mask)
    return compute_loss(out, codes, weights, text_card=V, card=CARD), values, counted


def test_jmoshi_text_is_two_separate_means() -> None:
    w = LossWeights(variant="jmoshi", text_pad_weight=0.5, pad_id=PAD, epad_id=EPAD)
    result, v, _ = run(w)
    nonpad = (v["epad"] + v["word"]) / 2  # EPAD counts as non-PAD
    pad = (v["pad0"] + v["pad3"]) / 2
    assert result.parts["text_nonpad_loss"].item() == pytest.approx(nonpad, rel=1e-5)
    assert result.parts["text_pad_loss"].item() == pytest.approx(pad, rel=1e-5)
    assert result.parts["text_loss"].item() == pytest.approx(nonpad + 0.5 * pad, rel=1e-5)
    # Correct (argmax = target): PAD, EPAD, PAD (scores > 0); the word has flat logits -> argmax 0 != 1.
    assert result.parts["text_acc"].item() == pytest.approx(3 / 4)


def test_kyutai_text_is_one_weighted_mean_with_epad_down_weighted() -> None:
    w = LossWeights(variant="kyutai", text_pad_weight=0.25, pad_id=PAD, epad_id=EPAD)
    result, v, _ = run(w)
    expected = (0.25 * v["pad0"] + 0.25 * v["epad"] + v["word"] + 0.25 * v["pad3"]) / (0.25 * 3 + 1)
    assert result.parts["text_loss"].item() == pytest.approx(expected, rel=1e-5)


def test_separate_means_do_not_depend_on_the_number_of_pads() -> None:
    """Adding PAD targets of the same CE leaves J-Moshi's loss unchanged but dilutes Kyutai's word target."""

    def text_only(targets: list[int], variant: str) -> float:
        logits = one_hot_logits(targets, [1.0] * len(targets), V)[None, None]
        out = LMOutput(
            torch.zeros(1, 0, len(targets), CARD),
            torch.zeros(1, 0, len(targets), dtype=torch.bool),
            logits,
            torch.ones(1, 1, len(targets), dtype=torch.bool),
        )
        codes = torch.tensor(targets)[None, None]
        return compute_loss(out, codes, LossWeights(variant=variant), V, CARD).parts["text_loss"].item()

    few, many = [1, PAD], [1, PAD, PAD, PAD, PAD]
    assert text_only(few, "jmoshi") == pytest.approx(text_only(many, "jmoshi"), rel=1e-6)
    assert text_only(few, "kyutai") == pytest.approx(text_only(many, "kyutai"), rel=1e-6)  # same CE everywhere
    mixed = [1, PAD, PAD, PAD]
    logits = one_hot_logits(mixed, [0.0, 3.0, 3.0, 3.0], V)[None, None]  # PADs easy, the word hard
    out = LMOutput(
        torch.zeros(1, 0, 4, CARD),
        torch.zeros(1, 0, 4, dtype=torch.bool),
        logits,
        torch.ones(1, 1, 4, dtype=torch.bool),
    )
    j = compute_loss(out, torch.tensor(mixed)[None, None], LossWeights(variant="jmoshi"), V, CARD).parts["text_loss"]
    assert j.item() == pytest.approx(ce(0, V) + 0.5 * ce(3, V), rel=1e-5)


def test_audio_weighted_mean_over_both_streams_and_components() -> None:
    w = LossWeights(semantic_weight=100.0, acoustic_weight=2.0, user_stream_weight=0.5)
    result, _, counted = run(w)
    weight = [100.0] + [2.0] * 7 + [50.0] + [1.0] * 7
    num = sum(wk * sum(c) for wk, c in zip(weight, counted))
    den = sum(wk * len(c) for wk, c in zip(weight, counted))
    p = result.parts
    assert p["audio_loss"].item() == pytest.approx(num / den, rel=1e-5)
    assert p["moshi_semantic_loss"].item() == pytest.approx(sum(counted[0]) / 2, rel=1e-5)
    assert p["moshi_acoustic_loss"].item() == pytest.approx(sum(sum(c) for c in counted[1:8]) / 7, rel=1e-5)
    assert p["user_semantic_loss"].item() == pytest.approx(sum(counted[8]) / 2, rel=1e-5)
    assert p["user_acoustic_loss"].item() == pytest.approx(sum(sum(c) for c in counted[9:]) / 7, rel=1e-5)
    # Codebook 0: targets 0 (score 0, flat -> argmax 0, right) and 1 (score 2, right); codebook 8: 0 (score 2) and 1.
    assert p["moshi_semantic_acc"].item() == 1.0 and p["user_semantic_acc"].item() == 1.0
    assert p["loss"].item() == pytest.approx(p["text_loss"].item() + p["audio_loss"].item(), rel=1e-6)


def test_total_uses_text_and_audio_weights() -> None:
    base, _, _ = run(LossWeights())
    scaled, _, _ = run(LossWeights(text_weight=2.0, audio_weight=0.5))
    expected = 2.0 * base.parts["text_loss"].item() + 0.5 * base.parts["audio_loss"].item()
    assert scaled.total.item() == pytest.approx(expected, rel=1e-6)


def test_dep_q_8_has_no_user_stream_parts() -> None:
    result, _, counted = run(LossWeights(semantic_weight=10.0), dep_q=8)
    assert set(result.parts) == set(PARTS)
    assert result.parts["user_semantic_loss"] is None and result.parts["user_acoustic_loss"] is None
    num = 10.0 * sum(counted[0]) + sum(sum(c) for c in counted[1:8])
    den = 10.0 * len(counted[0]) + sum(len(c) for c in counted[1:8])
    assert result.parts["audio_loss"].item() == pytest.approx(num / den, rel=1e-5)


def test_loss_is_differentiable_and_finite_with_nan_at_masked_positions() -> None:
    text_logits, text_mask, text_targets, _ = text_case()
    text_logits = text_logits.clone().requires_grad_(True)
    out = LMOutput(torch.zeros(1, 0, 7, CARD), torch.zeros(1, 0, 7, dtype=torch.bool), text_logits, text_mask)
    result = compute_loss(out, text_targets[:, None], LossWeights(), V, CARD)
    result.total.backward()
    assert torch.isfinite(result.total) and torch.isfinite(text_logits.grad).all()
    assert text_logits.grad[0, 0, 4:].abs().sum() == 0  # ignored targets get no gradient
