"""The second hostile probe (issue 22), through the surfaces it used: the studio's handlers (what Gradio's queue
calls), the stage CLIs' main(argv) and the job machinery. One test per defect; the HTTP ones (upload cache,
files per request) are in test_security.py."""

import json
from pathlib import Path

import pytest

from handler_helpers import make_workspace
from studio import curate, data_tab, timeline_tab
from test_handlers_finetune import assets  # noqa: F401 (a fixture: dataset and tiny models)
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


# ---------------------------------------------------------------- 3: processes bounded by the machine

def test_more_cpu_processes_than_cores_are_refused_by_the_form_and_start(tmp_path: Path, assets: Path) -> None:
    from studio import finetune_tab as ft
    from test_handlers_finetune import form as ft_form

    ws = make_workspace(tmp_path, assets)

    values = ft_form(device="cpu", num_processes=65536)
    _, problem = ft.on_form(ws, *values)
    assert "65536 CPU process(es) per machine" in problem and "core" in problem, problem
    message, _, _ = ft.on_start(ws, *values)
    assert message.startswith("✘") and "core" in message
    assert not any(ws.runs.iterdir())


# ---------------------------------------------------------------- 11: a refused Preprocess Start leaves nothing

def test_a_refused_preprocess_start_leaves_no_queued_folder(ws) -> None:  # type: ignore[no-untyped-def]
    import os

    from backend.jobs import processes
    from backend.jobs.folder import COMMAND_FILE, STATUS_FILE, write_json
    from studio import preprocess_tab as pp
    from test_handlers_preprocess import form as pp_form

    holder = ws.runs / "holder"  # a running fine-tune on the CPU: this test's own process stands in for it
    holder.mkdir(parents=True)
    write_json(holder / STATUS_FILE, {"state": "running", "pid": os.getpid(),
                                      "proc_start": processes.process_start(os.getpid())})
    write_json(holder / COMMAND_FILE, {"devices": ["cpu"]})
    message, _, _ = pp.on_start(ws, "tokenize_audio", *pp_form(ws))
    assert message.startswith("✘") and "holder is running on cpu" in message, message
    assert not ws.preprocess.exists() or not any(ws.preprocess.iterdir())


# ---------------------------------------------------------------- 15: Save configuration stays in the workspace

def test_save_configuration_writes_one_file_in_the_workspace(ws, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import tempfile

    from backend.core.errors import StudioError
    from studio import finetune_tab as ft
    from test_handlers_finetune import form as ft_form

    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    first, second = ft.on_save(ws, *ft_form()), ft.on_save(ws, *ft_form(lr=0.01))
    assert first == second and Path(first).parent == ws.root and json.loads(Path(first).read_text())["lr"] == 0.01
    with pytest.raises(StudioError):
        ft.on_save(ws, *ft_form(lr="many"))
    assert not any(temp.iterdir())
