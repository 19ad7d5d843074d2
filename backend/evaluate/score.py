"""Scores of written sample folders (input.wav, output.wav, output.json, task file): any folder in
Full-Duplex-Bench's layout, the studio's outputs or another system's. One record per sample, then one summary per
task: the formulas are backend.evaluate.metrics, the VAD silero-vad (backend.evaluate.speech)."""

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from backend.evaluate import fdb, metrics
from backend.evaluate.fdb import Sample
from backend.evaluate.metrics import Word
from backend.evaluate.speech import speech_segments

TURN_TASKS = ("smooth_turn_taking", "user_interruption")


def _mono(path: Path) -> tuple[np.ndarray, int]:
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return x.mean(axis=1), rate


def turn_events(sample: Sample, words: list[Word]) -> list[dict[str, Any]]:
    """TOR and latency of each event of the sample (one for FD-Bench's own tasks)."""
    if sample.task == "pause_handling":
        return [{"tor": metrics.take_over(words)}]
    if sample.task in TURN_TASKS and sample.turn_end is not None:
        return [{"tor": metrics.take_over(words), "latency": metrics.latency(words, sample.turn_end)}]
    if sample.task == "dialogue_turns":
        events = []
        for (end, answer), (lo, hi) in zip(sample.events, sample.windows):
            inside = [w for w in words if lo <= w.start and (hi is None or w.start < hi)]
            events.append(
                {
                    "tor": metrics.take_over(inside),
                    "latency": metrics.latency(inside, end),
                    "reference_latency": max(0.0, answer - end),
                }
            )
        return events
    return []


def score_sample(folder: Path) -> dict[str, Any]:
    """The record of one written sample folder."""
    sample = fdb.read_sample(folder)
    words = fdb.read_words(folder)
    model, rate = _mono(folder / fdb.OUTPUT_WAV)
    user, user_rate = _mono(folder / fdb.INPUT)
    model_segments = speech_segments(model, rate)
    user_vad = metrics.merge_gaps(speech_segments(user, user_rate), metrics.USER_MERGE_GAP)
    model_vad = metrics.merge_gaps(model_segments, metrics.MODEL_MERGE_GAP)
    record: dict[str, Any] = {
        "task": sample.task,
        "words": len(words),
        "seconds": len(model) / rate,
        "events": turn_events(sample, words),
        "stop_latency": [round(e - s, 3) for s, e in metrics.stop_intervals(user_vad, model_vad)],
        "response_latency": [round(e - s, 3) for s, e in metrics.response_intervals(user_vad, model_vad)],
    }
    if sample.task == fdb.BACKCHANNEL:
        # eval_backchannel reads silero's segments in seconds at its default resolution (0.1 s)
        segments = [(round(s, 1), round(e, 1)) for s, e in model_segments]
        reference = fdb.reference_timing(sample)
        bc = metrics.backchannels(segments, words, len(model) / rate, reference)
        record |= {
            "backchannel_tor": bc.tor,
            "backchannels": len(bc.segments),
            "frequency": bc.frequency,
            "jsd": bc.jsd,
            "backchannel_times": bc.segments,
            "reference_timing": None if reference is None else reference.tolist(),
        }
    return record


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: samples, TOR (mean over events), latency (mean where TOR = 1), the dialogue's own latency,
    backchannel frequency and JSD (means over samples), stop and response latency (means over intervals)."""
    out: dict[str, dict[str, Any]] = {}
    for task in sorted({r["task"] for r in records}):
        mine = [r for r in records if r["task"] == task]
        events = [e for r in mine for e in r["events"]]
        row = {
            "samples": len(mine),
            "tor": metrics.mean([e["tor"] for e in events]),
            "latency": metrics.mean([e["latency"] for e in events if e.get("latency") is not None]),
            "reference_latency": metrics.mean([e["reference_latency"] for e in events if "reference_latency" in e]),
            "stop_latency": metrics.mean([v for r in mine for v in r["stop_latency"]]),
            "response_latency": metrics.mean([v for r in mine for v in r["response_latency"]]),
        }
        if task == fdb.BACKCHANNEL:
            row |= {
                "backchannel_tor": metrics.mean([r["backchannel_tor"] for r in mine]),
                "frequency": metrics.mean([r["frequency"] for r in mine]),
                "jsd": metrics.mean([r["jsd"] for r in mine if r["jsd"] is not None]),
            }
        out[task] = row
    return out


def score_folder(folder: Path) -> dict[str, Any]:
    """Records and per-task summary of every written sample under `folder`."""
    records = {str(s.dir.relative_to(folder)): score_sample(s.dir) for s in fdb.find_samples(folder) if fdb.done(s.dir)}
    return {"records": records, "summary": summarise(list(records.values()))}
