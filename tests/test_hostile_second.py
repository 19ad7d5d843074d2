"""The second hostile probe (issue 22), through the surfaces it used: the studio's handlers (what Gradio's queue
calls), the stage CLIs' main(argv) and the job machinery. One test per defect; the HTTP ones (upload cache,
files per request) are in test_security.py."""

import json
from pathlib import Path

import pytest

from handler_helpers import make_workspace
from studio import curate, data_tab, timeline_tab
from train_helpers import write_dataset


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_workspace(tmp_path)


# ---------------------------------------------------------------- 14: raw errors reach the user

@pytest.mark.parametrize("start", [float("nan"), 1e308, float("inf"), -1.0])
def test_a_timeline_start_of_nan_or_1e308_is_a_message_or_the_rows_end(ws, start: float) -> None:  # type: ignore[no-untyped-def]
    write_dataset(ws.dataset, [40])
    status, _ = timeline_tab.on_show(ws, "train/d000", start, 3.2, "A")
    if start == 1e308:  # far past the end: the row's last frame, like any start past it (then the tokenizer)
        assert "window start" not in status and "SentencePiece model not found" in status, status
    else:
        assert status.startswith("✘ window start must be a number of seconds from 0"), status


@pytest.mark.parametrize("event", [
    '{"op": "times", "i": 0, "start": 1' + "0" * 400 + ', "end": 1}',
    "[" * 990 + "]" * 990,
])
def test_a_400_digit_time_or_990_deep_json_in_a_curate_edit_is_a_message(ws, event: str) -> None:  # type: ignore[no-untyped-def]
    message, _ = curate.on_edit(ws, "demo_cafe", event)
    assert message.startswith("✘") and "Errno" not in message and "recursion" not in message, message
    assert len(message) < 300


def test_a_nul_in_a_role_text_says_so(ws) -> None:  # type: ignore[no-untyped-def]
    message, _, _ = data_tab.on_save_persona(ws, "demo_cafe", "A", "a helpful\x00 waiter", None, None, None, None)
    assert "NUL" in message and "at most" not in message, message
    assert not (ws.raw / "demo_cafe.persona.json").exists()
