"""How a training run reports its pace (torch-free: the studio reads it): what it is doing before its first
step, as {"event": "phase"} lines of metrics.jsonl (and lines of train.log), and an ETA from step durations
only. Loading a 7B model, building the dataset's row cache or DeepSpeed's start can take minutes; counted in
the ETA they made the first estimate several times too long."""

import time
from typing import Any

PHASE_EVENT = "phase"


def phase_record(message: str, now: float | None = None) -> dict[str, Any]:
    """A metrics.jsonl line saying the run is now `message` (e.g. "loading the base model ...")."""
    return {"event": PHASE_EVENT, "message": message, "time": time.time() if now is None else now}


def current_phase(metrics: list[dict[str, Any]], now: float) -> str:
    """The newest phase with how long it has lasted, e.g. "loading the base model x (35 s)", while no step
    has been logged after it; "" once one has."""
    for row in reversed(metrics):
        if "event" not in row:
            return ""
        if row["event"] == PHASE_EVENT:
            return f"{row['message']} ({max(0, int(now - row['time']))} s)"
    return ""


def eta_s(step: int, max_steps: int, now: float, first_step: int, first_done: float) -> float | None:
    """Seconds left at optimiser step `step`, from the steps completed since `first_done`, the time this
    process completed its first step (`first_step`): neither the startup nor the first step's one-time
    warm-up counts. None until a step after the first has completed."""
    if step <= first_step:
        return None
    return (now - first_done) / (step - first_step) * (max_steps - step)
