"""Issue 14's frictions that show in a handler's output (no browser): each failed before its fix."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from handler_helpers import make_workspace

from backend.core.errors import InputError
from backend.dataset import pipeline
from backend.dataset.text_layout import DialogueAudit
from studio import continuations_tab, curate, data_tab, finetune_tab


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_workspace(tmp_path)


def test_gap_histogram_has_a_numeric_axis_overlaps_left_of_zero(ws) -> None:  # type: ignore[no-untyped-def]
    _, gaps = data_tab.stats_outputs(ws)
    x = gaps["gap (s)"]
    assert pd.api.types.is_numeric_dtype(x) and x.is_monotonic_increasing and x.min() < 0 < x.max()


def test_empty_plots_and_tables_hold_no_placeholder_values(ws) -> None:  # type: ignore[no-untyped-def]
    assert finetune_tab.curves([]).empty  # a null row drew "null" and "0.000000"
    table = continuations_tab.on_item(ws, None, "stereo", {})[5]
    assert table is not None and list(table.columns) == ["metric"]  # not Gradio's "1 2 3"


def test_build_shows_progress_before_loading_anything(ws, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[float, str]] = []

    def prepare(*args, **kwargs):  # type: ignore[no-untyped-def]
        assert seen, "no progress before the build started (Mimi loads for a minute on first use)"
        raise InputError(None, "stop here")

    monkeypatch.setattr(pipeline, "prepare_dataset", prepare)
    data_tab.on_build(ws, lambda f, msg: seen.append((f, msg)), False, "spread", True, False, 3, 0)
    assert seen[0][0] == 0 and seen[0][1]


def test_every_audit_warning_is_spelled_out() -> None:
    audit = DialogueAudit(
        "chat-1",
        "raw/chat-1.json",
        "words",
        {"layout": "per_word"},
        2.0,
        {},
        ["speaker B has no words", "word 3 ends after the audio"],
    )
    assert "speaker B has no words" in audit.summary() and "word 3 ends after the audio" in audit.summary()


def test_chat_recordings_are_marked_in_the_dialogue_list(ws) -> None:  # type: ignore[no-untyped-def]
    for f in ws.raw.glob("demo_cafe.*"):
        shutil.copyfile(f, ws.raw / f"chat-20260101-120000{f.suffix}")
    labels = dict((value, label) for label, value in curate.dialogue_labels(ws))
    assert labels["chat-20260101-120000"] == "chat-20260101-120000 (chat recording)"
    assert labels["demo_cafe"] == "demo_cafe"
