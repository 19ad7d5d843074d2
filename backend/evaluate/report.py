"""An evaluation's results read back (results.json), its table (models side by side) and its figures. Torch-free:
the Evaluate tab and a later comparison read them without loading a model."""

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.core import figures
from backend.core.atomic import write_text_atomic
from backend.core.errors import InputError
from backend.evaluate.metrics import DISJOINT, resized, timing_distribution

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"
TOR_FIGURE, BACKCHANNEL_FIGURE = "tor_latency.png", "backchannel_timing.png"
TURNS_FIGURE = "continuation_turns.png"  # with eval_data: the continuations' turn-taking units against the reference
TIMING_POINTS = 50  # backchannel timing is compared on relative time, 0..1 of each probe
# (task, summary key, row label): the table's rows, in order; arrows say which way is better.
ROWS = [
    ("pause_handling", "tor", "pause handling: TOR ↓"),
    ("smooth_turn_taking", "tor", "smooth turn-taking: TOR ↑"),
    ("smooth_turn_taking", "latency", "smooth turn-taking: latency (s) ↓"),
    ("user_interruption", "tor", "user interruption: TOR ↑"),
    ("user_interruption", "latency", "user interruption: latency (s) ↓"),
    ("backchannel", "backchannel_tor", "backchannel: TOR ↓"),
    ("backchannel", "frequency", "backchannel: frequency (1/s) ↑"),
    ("backchannel", "jsd", "backchannel: JSD of timing ↓"),
    ("dialogue_turns", "tor", "dialogue turns: TOR ↑"),
    ("dialogue_turns", "latency", "dialogue turns: latency (s)"),
    ("dialogue_turns", "reference_latency", "dialogue turns: the dialogue's own latency (s)"),
    ("*", "stop_latency", "v1.5 stop latency (s) ↓"),
    ("*", "response_latency", "v1.5 response latency (s) ↓"),
]
# Turn-taking units of the continuations (backend.evaluate.continuation_stats), with their names in the table; the
# dataset's own dialogues are the source named REFERENCE (not a model label: labels start with a letter or digit).
TURN_UNITS = {
    "ipu": "IPUs",
    "pause": "pauses",
    "gap": "gaps",
    "overlap_between": "overlaps between speakers",
    "overlap_within": "overlaps within a turn",
}
TURN_ROWS = (
    ("per_minute", "{} per minute"),
    ("seconds", "{}, seconds in total"),
    ("jsd", "{}: JSD of durations to the reference ↓"),
)
REFERENCE = "(reference)"
LOSS_ROWS = (
    "text_nonpad_loss",
    "moshi_semantic_loss",
    "moshi_acoustic_loss",
    "user_semantic_loss",
    "user_acoustic_loss",
)


def write_results(folder: Path, results: dict[str, Any]) -> None:
    write_text_atomic(Path(folder) / RESULTS_FILE, json.dumps(results, indent=1) + "\n")
    write_text_atomic(Path(folder) / TABLE_FILE, table(results) + "\n")


def read_results(folder: Path) -> dict[str, Any]:
    """results.json of an evaluation folder ({} before it was written)."""
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable results ({e})") from None


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _all_tasks(summary: dict[str, dict[str, Any]], key: str) -> float | None:
    """A v1.5 timing figure over every task, weighted by samples."""
    rows = [r for r in summary.values() if r.get(key) is not None]
    total = sum(r["samples"] for r in rows)
    return sum(r[key] * r["samples"] for r in rows) / total if total else None


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    """[label, value per model] for every row that has a value for some model."""
    models = results.get("models", [])
    out = []
    for task, key, label in ROWS:
        values = [
            (_all_tasks(results["summary"][m], key) if task == "*" else results["summary"][m].get(task, {}).get(key))
            for m in models
        ]
        if any(v is not None for v in values):
            out.append([label, *map(_cell, values)])
    for key in LOSS_ROWS:
        values = [results.get("loss", {}).get(m, {}).get(key) for m in models]
        if any(v is not None for v in values):
            out.append([f"eval loss: {key.removesuffix('_loss')}", *map(_cell, values)])
    turns = results.get("turn_taking", {})
    for unit, name in TURN_UNITS.items() if turns else ():
        for key, text in TURN_ROWS:
            reference = "" if key == "jsd" else f" (reference {_cell(turns[REFERENCE][unit][key])})"
            values = [turns.get(m, {}).get(unit, {}).get(key) for m in models]
            out.append([f"continuations: {text.format(name)}{reference}", *map(_cell, values)])
    out.append(["probes (samples)", *[str(sum(r["samples"] for r in results["summary"][m].values())) for m in models]])
    return out


def table(results: dict[str, Any]) -> str:
    """A Markdown table, one column per model."""
    models = results.get("models", [])
    lines = ["| | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def tor_latency_figure(results: dict[str, Any]) -> "Figure":
    """TOR and latency per task, one bar per model."""
    fig = figures.new_figure(10, 3.6)
    models = results["models"]
    tasks = sorted({t for m in models for t in results["summary"][m]})
    for ax, key, title in zip(fig.subplots(1, 2), ("tor", "latency"), ("take-over rate (TOR)", "latency (s)")):
        width = 0.8 / max(len(models), 1)
        for i, model in enumerate(models):
            values = [results["summary"][model].get(t, {}).get(key) for t in tasks]
            ax.bar(np.arange(len(tasks)) + i * width, [np.nan if v is None else v for v in values], width, label=model)
        ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, [t.replace("_", "\n") for t in tasks], fontsize=8)
        ax.set_title(title)
    fig.axes[0].legend(fontsize=8)
    return fig


def relative_timing(record: dict[str, Any]) -> np.ndarray:
    """A backchannel probe's timing distribution on relative time (TIMING_POINTS points)."""
    return resized(
        timing_distribution([tuple(s) for s in record["backchannel_times"]], record["seconds"]), TIMING_POINTS
    )


def backchannel_figure(results: dict[str, Any]) -> "Figure":
    """Where each model's backchannels fall over the probes (relative time), against the reference."""
    fig = figures.new_figure(8, 3.2)
    ax = fig.subplots()
    x = np.linspace(0, 1, TIMING_POINTS)
    reference = [
        np.asarray(r["reference_timing"])
        for m in results["models"][:1]
        for r in results["records"][m].values()
        if r.get("reference_timing")
    ]
    if reference:
        ax.plot(x, np.mean([resized(r, TIMING_POINTS) for r in reference], axis=0), "k--", label="reference")
    for model in results["models"]:
        timings = [relative_timing(r) for r in results["records"][model].values() if r.get("backchannel_times")]
        if timings:
            ax.plot(x, np.mean(timings, axis=0), label=model)
    ax.set_xlabel("time in the probe (fraction)")
    ax.set_ylabel("share of backchannel time")
    ax.set_title("backchannel timing")
    if ax.lines:
        ax.legend(fontsize=8)
    return fig


def turn_taking_figure(results: dict[str, Any]) -> "Figure":
    """The continuations' units per kind, one bar per model beside the reference (grey): how many per minute, their
    seconds in total, and the distance of their durations to the reference's (dashed: disjoint)."""
    turns = results["turn_taking"]
    models = results["models"]
    units = list(TURN_UNITS)
    x = np.arange(len(units))
    fig = figures.new_figure(14, 4.0)
    fig.suptitle("turn-taking of the continuations against the dialogues themselves")
    for ax, (key, text) in zip(fig.subplots(1, 3), TURN_ROWS):
        shown = models if key == "jsd" else [REFERENCE, *models]  # the reference's distance to itself is 0
        width = 0.8 / len(shown)
        for i, source in enumerate(shown):
            values = [turns.get(source, {}).get(unit, {}).get(key) for unit in units]
            colour = "0.55" if source == REFERENCE else f"C{models.index(source)}"  # a model's colour in each panel
            ax.bar(x + i * width, [np.nan if v is None else v for v in values], width, label=source, color=colour)
        ax.set_xticks(x + 0.4 - width / 2, [textwrap.fill(TURN_UNITS[u], 10) for u in units], fontsize=8)
        ax.set_title(text.replace("{}", "").strip(" ,:"), fontsize=10)
        if key == "jsd":
            ax.axhline(DISJOINT, color="k", ls="--", lw=1)
            ax.text(x[-1] + 0.4, DISJOINT, "disjoint", ha="center", va="bottom", fontsize=8)
            ax.set_ylim(0, DISJOINT * 1.1)
    fig.axes[0].legend(fontsize=8)
    return fig


def write_figures(folder: Path, results: dict[str, Any]) -> None:
    figures.save(tor_latency_figure(results), Path(folder) / TOR_FIGURE)
    figures.save(backchannel_figure(results), Path(folder) / BACKCHANNEL_FIGURE)
    if results.get("turn_taking"):
        figures.save(turn_taking_figure(results), Path(folder) / TURNS_FIGURE)
