"""Turn-taking statistics of continuations against the reference (backend.evaluate.continuation_stats) on hand-made
dialogues with known units, their rows in the evaluation table, and continuations read back on resume."""

from pathlib import Path

import numpy as np
import pytest
from train_helpers import write_dataset, write_model

from backend.evaluate import continuation_stats
from backend.evaluate.config import EvaluateConfig
from backend.evaluate.continuation_stats import generate_config, sample_dialogues, unit_stats
from backend.evaluate.report import REFERENCE, table
from backend.finetune.data import DatasetRows
from backend.inference.generate import pick_dialogues
from backend.inference.generate_config import DONE_FILE, GenerateConfig
from backend.inference.turn_taking import TurnStats


def dialogue(gaps: list[tuple[float, float]], seconds: float = 30.0) -> TurnStats:
    """A 30 s window whose only units are the given gaps and two IPUs."""
    return TurnStats(
        "d", 0.0, seconds, {"A": [(0.0, 2.0)], "B": [(3.0, 5.0)]}, {"A": [], "B": []}, {"A": [], "B": []}, gaps, [], []
    )


def test_the_same_units_as_the_reference_give_the_same_rates_and_a_distance_of_0() -> None:
    same = [dialogue([(2.0, 3.0), (10.0, 10.5)]), dialogue([(4.0, 4.2)])]
    stats = unit_stats({REFERENCE: same, "tuned": same})
    assert stats["tuned"]["gap"] == stats[REFERENCE]["gap"]
    assert stats["tuned"]["gap"]["per_minute"] == pytest.approx(3 / 1.0)  # 3 gaps in two 30 s windows
    assert stats["tuned"]["gap"]["seconds"] == pytest.approx(1.0 + 0.5 + 0.2)
    assert stats["tuned"]["gap"]["jsd"] == pytest.approx(0.0, abs=1e-9)
    assert stats["tuned"]["pause"] == {"per_minute": 0.0, "seconds": 0.0, "jsd": None}  # none on either side


def test_other_units_than_the_reference_are_far_from_it() -> None:
    stats = unit_stats({REFERENCE: [dialogue([(2.0, 2.2)] * 4)], "base": [dialogue([(2.0, 4.8)], seconds=60.0)]})
    assert stats["base"]["gap"]["per_minute"] == pytest.approx(1.0)
    assert stats[REFERENCE]["gap"]["per_minute"] == pytest.approx(8.0)
    assert stats["base"]["gap"]["jsd"] == pytest.approx(np.sqrt(np.log(2)))  # disjoint histograms: the largest
    assert stats["base"]["ipu"]["jsd"] == pytest.approx(0.0, abs=1e-9)  # the same IPUs
    nothing = unit_stats({REFERENCE: [dialogue([(2.0, 2.2)])], "base": [dialogue([])]})["base"]["gap"]
    assert nothing == {"per_minute": 0.0, "seconds": 0.0, "jsd": pytest.approx(np.sqrt(np.log(2)))}  # none where
    # the reference has some: as far from it as can be


def test_the_table_shows_each_model_beside_the_reference() -> None:
    same = [dialogue([(2.0, 3.0)])]
    results = {
        "models": ["tuned"],
        "summary": {"tuned": {}},
        "loss": {},
        "turn_taking": unit_stats({REFERENCE: same, "tuned": same}),
    }
    shown = table(results)
    assert "| continuations: gaps per minute (reference 2.000) | 2.000 |" in shown
    assert "| continuations: gaps: JSD of durations to the reference ↓ | 0.000 |" in shown


def test_a_resumed_evaluation_reads_its_continuations_back_instead_of_generating_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = GenerateConfig(
        model=str(write_model(tmp_path / "model")),
        dataset=write_dataset(tmp_path / "data", [20, 20]),
        output=tmp_path / "continuations" / "m",
        prompt_frames=4,
        gen_frames=4,
        device="cpu",
    )
    first = continuation_stats.continued(gen)
    assert [c.dialogue_id for c in first] == ["train/d000", "train/d001"]

    def never(cfg: GenerateConfig) -> list:
        raise AssertionError("generated again")

    monkeypatch.setattr(continuation_stats, "generate", never)
    again = continuation_stats.continued(gen)
    assert [c.dialogue_id for c in again] == ["train/d000", "train/d001"]
    assert all(
        np.array_equal(a.tokens, b.tokens) and np.array_equal(a.reference, b.reference) for a, b in zip(first, again)
    )
    (gen.output / DONE_FILE).unlink()  # an attempt stopped while writing: generated again
    with pytest.raises(AssertionError, match="generated again"):
        continuation_stats.continued(gen)


def test_continuations_cover_a_fixed_sample_of_the_split_of_the_size_asked(tmp_path: Path) -> None:
    """continued_dialogues bounds the work: the generator is handed that many of the split's dialogues, the same
    ones for every model and every evaluation, and a larger number keeps the smaller one's."""
    data = write_dataset(tmp_path / "data", [8] * 12)
    ids = list(DatasetRows(data).ids)
    cfg = EvaluateConfig(models=["m"], eval_data=data, continued_dialogues=3)
    chosen = sample_dialogues(ids, cfg.continued_dialogues)
    gens = [generate_config(cfg, source, tmp_path / label, chosen, "cpu") for label, source in (("a", "x"), ("b", "y"))]
    for gen in gens:
        picked = [ids[i] for i in pick_dialogues(DatasetRows(data), gen)]
        assert picked == chosen and len(picked) == 3
    assert chosen == sorted(chosen, key=ids.index)  # in the split's order
    assert chosen != ids[:3] or sample_dialogues(ids, 4) != ids[:4]  # a sample, not the first N
    assert set(sample_dialogues(ids, 3)) < set(sample_dialogues(ids, 5))
    assert sample_dialogues(list(reversed(ids)), 3) == sorted(chosen, key=ids.index, reverse=True)  # by id, not row
    assert sample_dialogues(ids, 100) == ids  # a small split: all of it
