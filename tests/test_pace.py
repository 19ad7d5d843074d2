"""A run's pace: the ETA from step durations only (hand-made timings), and the startup phase shown until the
first step is logged."""

import pytest

from backend.finetune.pace import current_phase, eta_s, phase_record


def test_the_eta_counts_neither_the_startup_nor_the_first_step() -> None:
    # Startup 170 s, a first step of 30 s (warm-up) done at t=200, then 2 s per step: 125 steps in all.
    assert eta_s(step=1, max_steps=125, now=200.0, first_step=1, first_done=200.0) is None
    assert eta_s(step=2, max_steps=125, now=202.0, first_step=1, first_done=200.0) == pytest.approx(2 * 123)
    assert eta_s(step=11, max_steps=125, now=220.0, first_step=1, first_done=200.0) == pytest.approx(2 * 114)
    assert eta_s(step=125, max_steps=125, now=448.0, first_step=1, first_done=200.0) == 0


def test_a_resumed_run_counts_from_its_own_first_step() -> None:
    # Resumed at step 30: its first step (31) completed at t=990, then 2 s per step.
    assert eta_s(step=31, max_steps=50, now=990.0, first_step=31, first_done=990.0) is None
    assert eta_s(step=41, max_steps=50, now=1010.0, first_step=31, first_done=990.0) == pytest.approx(2 * 9)


def test_the_phase_shows_with_its_duration_until_a_step_is_logged() -> None:
    model = phase_record("loading the base model m", now=100.0)
    assert current_phase([], 130.0) == ""
    assert current_phase([phase_record("memory-mapping", now=90.0), model], 135.4) == "loading the base model m (35 s)"
    step = {"step": 1, "max_steps": 4, "eta_s": None}
    assert current_phase([model, step], 200.0) == ""
    assert current_phase([model, step, {"event": "checkpoint", "step": 1}], 200.0) == ""
    resumed = [model, step, phase_record("loading checkpoint step-000001", now=300.0)]
    assert current_phase(resumed, 301.0) == "loading checkpoint step-000001 (1 s)"
