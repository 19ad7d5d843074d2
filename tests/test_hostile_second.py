"""The second hostile probe (issue 22), through the surfaces it used: the studio's handlers (what Gradio's queue
calls), the stage CLIs' main(argv) and the job machinery. One test per defect; the HTTP ones (upload cache,
files per request) are in test_security.py."""

import json
from pathlib import Path

import pytest
from handler_helpers import make_workspace
from test_handlers_finetune import assets  # noqa: F401 (a fixture: dataset and tiny models)
from train_helpers import write_dataset

from studio import curate, data_tab, timeline_tab

CURATOR = curate.Curator()  # the editors one studio keeps open (tests use their own workspaces)


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_workspace(tmp_path)


# ---------------------------------------------------------------- 14: raw errors reach the user


@pytest.mark.parametrize("start", [float("nan"), 1e308, float("inf"), -1.0])
def test_a_timeline_start_of_nan_or_1e308_is_a_message_or_the_rows_end(ws, start: float) -> None:  # type: ignore[no-untyped-def]
    write_dataset(ws.dataset, [40])
    status, _ = timeline_tab.on_show(ws, "train/d000", start, 3.2, "A")
    if start == 1e308:  # far past the end: the row's last frame, like any start past it
        assert "window start" not in status and "39–39 of 40" in status, status
    else:
        assert status.startswith("✘ window start must be a number of seconds from 0"), status


@pytest.mark.parametrize(
    "event",
    [
        '{"op": "times", "i": 0, "start": 1' + "0" * 400 + ', "end": 1}',
        "[" * 990 + "]" * 990,
    ],
)
def test_a_400_digit_time_or_990_deep_json_in_a_curate_edit_is_a_message(ws, event: str) -> None:  # type: ignore[no-untyped-def]
    message, _ = CURATOR.on_edit(ws, "demo_cafe", event)
    assert message.startswith("✘") and "Errno" not in message and "recursion" not in message, message
    assert len(message) < 300


def test_a_nul_in_a_role_text_says_so(ws) -> None:  # type: ignore[no-untyped-def]
    message, _, _ = data_tab.on_save_persona(ws, "demo_cafe", "A", "a helpful\x00 waiter", None, None, None, None)
    assert "NUL" in message and "at most" not in message, message
    assert not (ws.raw / "demo_cafe.persona.json").exists()


# ---------------------------------------------------------------- 3: processes bounded by the machine


def test_more_cpu_processes_than_cores_are_refused_by_the_form_and_start(tmp_path: Path, assets: Path) -> None:
    from test_handlers_finetune import form as ft_form

    from studio import finetune_tab as ft

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

    from test_handlers_preprocess import form as pp_form

    from backend.jobs import processes
    from backend.jobs.folder import COMMAND_FILE, STATUS_FILE, write_json
    from studio import preprocess_tab as pp

    holder = ws.runs / "holder"  # a running fine-tune on the CPU: this test's own process stands in for it
    holder.mkdir(parents=True)
    write_json(
        holder / STATUS_FILE,
        {"state": "running", "pid": os.getpid(), "proc_start": processes.process_start(os.getpid())},
    )
    write_json(holder / COMMAND_FILE, {"devices": ["cpu"]})
    message, _, _ = pp.on_start(ws, "tokenize_audio", *pp_form(ws))
    assert message.startswith("✘") and "holder is running on cpu" in message, message
    assert not ws.preprocess.exists() or not any(ws.preprocess.iterdir())


# ---------------------------------------------------------------- 15: Save configuration stays in the workspace


def test_save_configuration_writes_one_file_in_the_workspace(
    ws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import tempfile

    from test_handlers_finetune import form as ft_form

    from backend.core.errors import StudioError
    from studio import finetune_tab as ft

    temp = tmp_path / "system-temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    first, second = ft.on_save(ws, *ft_form()), ft.on_save(ws, *ft_form(lr=0.01))
    assert first == second and Path(first).parent == ws.root and json.loads(Path(first).read_text())["lr"] == 0.01
    with pytest.raises(StudioError):
        ft.on_save(ws, *ft_form(lr="many"))
    assert not any(temp.iterdir())


# ---------------------------------------------------------------- 1: compressed-audio bombs


def silent_flac(path: Path, seconds: float, rate: int = 16000) -> Path:
    """Digital silence compresses to almost nothing: minutes of audio in a few kB (the probe's bomb: 10 h, 7 MB)."""
    import numpy as np
    import soundfile

    block = np.zeros((rate * 60, 2), dtype=np.int16)
    with soundfile.SoundFile(str(path), "w", rate, 2, "PCM_16", format="FLAC") as f:
        for _ in range(int(seconds // 60)):
            f.write(block)
    return path


def test_audio_beyond_the_duration_limit_is_refused_before_decoding(
    ws,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import soundfile

    from backend.data.audio_io import MAX_AUDIO_HOURS_ENV

    monkeypatch.setenv(MAX_AUDIO_HOURS_ENV, "0.05")  # 3 minutes
    up = tmp_path / "up"
    up.mkdir()
    bomb = silent_flac(up / "aaa_bomb.flac", 240)
    decoded: list[str] = []
    for name in ("read", "blocks"):
        real = getattr(soundfile, name)
        monkeypatch.setattr(soundfile, name, lambda f, *a, _r=real, **k: decoded.append(str(f)) or _r(f, *a, **k))
    message, _, chosen = data_tab.on_upload(ws, [str(bomb)])
    assert "lasts 0.07 h, longer than the limit of 0.05 h" in message and chosen is None, message
    assert not list(ws.raw.glob("aaa_bomb*")) and decoded == []
    silent_flac(ws.raw / "aaa_bomb.flac", 240)  # copied in by hand: the first dialogue the tab picks on load
    names, picked = data_tab.on_shown(ws, None)
    assert picked == "aaa_bomb"
    report, preview = data_tab.on_pick(ws, picked)
    assert "longer than the limit" in report and preview == "" and decoded == []


def test_validating_long_audio_reads_it_in_blocks(tmp_path: Path) -> None:
    """Memory bounded independently of the duration: 20 minutes (153 MB as float32) validate in a few blocks."""
    import tracemalloc

    from backend.data.files import DialogueFiles
    from backend.data.validate import validate_dialogue

    audio = silent_flac(tmp_path / "long.flac", 20 * 60)
    tracemalloc.start()
    report = validate_dialogue(DialogueFiles("long", audio, None))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert report.audio_info and report.audio_info["duration"] == 1200.0
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MB"


# ---------------------------------------------------------------- 2 and "Also": words bounded at import


def test_words_are_bounded_per_second_per_file_and_in_length(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_bad_inputs import stereo, transcript

    from backend.data.transcripts import MAX_WORDS

    up = tmp_path / "up"
    up.mkdir()
    dense = [{"speaker": "A", "word": f"w{i}", "start": i / 100, "end": i / 100 + 0.01} for i in range(100)]
    huge = [{"speaker": "A", "word": "x", "start": 0.1, "end": 0.2}] * (MAX_WORDS + 1)
    long_word = [{"speaker": "A", "word": "x" * 2_000_000, "start": 0.1, "end": 0.2}]
    files = [
        stereo(up / "dense.wav"),
        transcript(up / "dense.json", dense),
        stereo(up / "huge.wav"),
        transcript(up / "huge.json", huge),
        stereo(up / "long.wav"),
        transcript(up / "long.json", long_word),
    ]
    message, _, chosen = data_tab.on_upload(ws, [str(f) for f in files])
    assert "100 words for 1.00 s of audio: more than 20 words a second" in message, message
    assert f"holds {MAX_WORDS + 1} words; a transcript may hold at most {MAX_WORDS}" in message
    assert "a word of 2000000 characters" in message and len(message) < 2000 and chosen is None
    assert not [p for p in ws.raw.iterdir() if p.stem in ("dense", "huge", "long")]


def test_a_5_sample_wav_at_1_hz_is_refused(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import soundfile
    from test_bad_inputs import transcript

    up = tmp_path / "up"
    up.mkdir()
    soundfile.write(str(up / "slow.wav"), np.zeros((5, 2)), 1)
    message, _, chosen = data_tab.on_upload(ws, [str(up / "slow.wav"), str(transcript(up / "slow.json"))])
    assert "sample rate of 1 Hz; dialogue audio needs at least 8000 Hz" in message and chosen is None, message


# ---------------------------------------------------------------- 7: an upload never replaces a file silently


def test_an_upload_with_an_existing_name_keeps_the_old_dialogue(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_bad_inputs import stereo, transcript

    up = tmp_path / "up"
    up.mkdir()
    before = {p.name: p.read_bytes() for p in ws.raw.glob("demo_cafe*")}
    message, _, chosen = data_tab.on_upload(
        ws, [str(stereo(up / "demo_cafe.wav")), str(transcript(up / "demo_cafe.json"))]
    )
    assert "the workspace already has demo_cafe.flac, demo_cafe.json" in message and chosen is None, message
    assert {p.name: p.read_bytes() for p in ws.raw.glob("demo_cafe*")} == before


def test_a_voice_upload_with_an_existing_name_keeps_the_old_voice(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_bad_inputs import stereo

    (tmp_path / "up1").mkdir()
    (tmp_path / "up2").mkdir()
    first, second = stereo(tmp_path / "up1" / "voice.wav", seconds=1.0), stereo(tmp_path / "up2" / "voice.wav", 2, 2.0)
    data_tab.on_save_persona(ws, "demo_cafe", "A", "", None, None, None, str(first))
    old = (ws.voices / "voice.wav").read_bytes()
    _, (voices, voice), _ = data_tab.on_save_persona(ws, "demo_weekend", "A", "", None, None, None, str(second))
    assert (ws.voices / "voice.wav").read_bytes() == old and voice == "voice-2.wav" and "voice-2.wav" in voices


# ---------------------------------------------------------------- 8, 9: Curate edits by the importer's rules


def edit(ws, name: str, **event) -> str:  # type: ignore[no-untyped-def]
    return CURATOR.on_edit(ws, name, json.dumps(event))[0]


def test_a_lone_surrogate_in_a_curate_edit_is_refused_and_the_dialogue_stays_usable(ws) -> None:  # type: ignore[no-untyped-def]
    from backend.data.transcripts import load_transcript

    before = load_transcript(ws.raw / "demo_cafe.json").words
    message = CURATOR.on_edit(ws, "demo_cafe", '{"op": "text", "i": 0, "text": "caf\\ud800"}')[0]
    assert message.startswith("✘") and "lone surrogate" in message, message
    message, preview = CURATOR.on_curate_pick(ws, "demo_cafe")
    assert 'class="ms-curate"' in preview and "unsaved" not in message
    assert edit(ws, "demo_cafe", op="text", i=0, text="x" * 201).startswith("✘ a word of 201 characters")
    assert CURATOR.on_save(ws, "demo_cafe")[0].startswith("✔ saved")
    assert load_transcript(ws.raw / "demo_cafe.json").words == before


def test_a_save_never_writes_a_transcript_that_fails_validation(ws, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The editor's own checks passed, the importer's did not (here: a word past the bound, slipped in): not written."""
    import dataclasses

    from backend.data.annotate.edit import TranscriptEditor

    CURATOR.on_curate_pick(ws, "demo_cafe")
    editor = CURATOR._editor(curate._dialogue(ws, "demo_cafe"))
    editor.words[0] = dataclasses.replace(editor.words[0], word="y\ud800")
    before = (ws.raw / "demo_cafe.json").read_bytes()
    message, _ = CURATOR.on_save(ws, "demo_cafe")
    assert message.startswith("✘ demo_cafe.json: not saved") and "surrogate" in message, message
    assert (ws.raw / "demo_cafe.json").read_bytes() == before and not list(ws.raw.glob(".demo_cafe.json.*"))
    assert TranscriptEditor.open(ws.raw / "demo_cafe.json").words[0].word != "y\ud800"


def test_an_empty_transcript_stays_editable(ws) -> None:  # type: ignore[no-untyped-def]
    from backend.data.transcripts import load_transcript

    count = len(load_transcript(ws.raw / "demo_cafe.json").words)
    for _ in range(count):
        assert edit(ws, "demo_cafe", op="delete", i=0).startswith("✔")
    message, _ = CURATOR.on_save(ws, "demo_cafe")
    assert message.startswith("✘ demo_cafe.json: not saved, no words are left"), message
    assert len(load_transcript(ws.raw / "demo_cafe.json").words) == count
    (ws.raw / "demo_cafe.json").write_text("[]")  # what annotating a recording without speech writes
    message, preview = CURATOR.on_curate_pick(ws, "demo_cafe")
    assert not message.startswith("✘") and 'class="ms-curate"' in preview, message
    assert edit(ws, "demo_cafe", op="insert", speaker="A", text="hello", start=0.5, end=0.9).startswith("✔")
    assert CURATOR.on_save(ws, "demo_cafe")[0].startswith("✔ saved")
    assert [w.word for w in load_transcript(ws.raw / "demo_cafe.json").words] == ["hello"]


# ---------------------------------------------------------------- 10: Build lists what it cannot use


def test_build_skips_what_is_left_out_and_lists_what_it_cannot_use(
    tmp_path: Path,
    demo_workspace,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import shutil

    import soundfile

    from backend.dataset.tokenize_text import TextTokenizeConfig

    ws = make_workspace(tmp_path)
    shutil.copytree(demo_workspace.models, ws.models, dirs_exist_ok=True, copy_function=os.link)
    shutil.copyfile(ws.raw / "demo_cafe.flac", ws.raw / "chat-20260101-120000.flac")
    (ws.raw / "chat-20260101-120000.json").write_text("[]")  # a silent chat conversation
    CURATOR.on_exclude(ws, "demo_weekend", True)
    (ws.raw / "demo_weekend.json").write_text("[]")  # excluded, and unusable: never read
    (ws.raw / "demo_cafe.json").write_text(json.dumps([{"speaker": "A", "word": "x", "start": 0.1, "end": 0.05}]))
    read: list[str] = []
    real = soundfile.read
    monkeypatch.setattr(soundfile, "read", lambda f, *a, **k: read.append(Path(f).stem) or real(f, *a, **k))
    message = data_tab.on_build(
        ws, None, False, *[getattr(TextTokenizeConfig(), n) for n in data_tab.LAYOUT_FIELDS], "", 0
    )  # no validation split
    assert message.startswith("✔ 1 dialogues"), message
    assert "1 excluded" in message and "1 chat recording(s)" in message and "1 without text tokens" in message
    assert "✘ not usable, left out: demo_cafe.json: entry 0" in message and "start 0.1 s is after end" in message
    assert "demo_weekend" not in read and not any(n.startswith("chat-") for n in read), read


# ---------------------------------------------------------------- 6: export and init replace only their own output


def test_export_and_init_never_replace_a_checkpoint_or_a_model_in_use(
    tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture
) -> None:
    import dataclasses

    from test_handlers_finetune import init_values

    from backend.models import export, initialise
    from studio import finetune_tab as ft

    ws = make_workspace(tmp_path, assets)
    ws = ws.with_settings(dataclasses.replace(ws.settings, lm="models/tiny8"))
    step = ws.runs / "other" / "checkpoints" / "step-000010"
    step.mkdir(parents=True)
    (step / "complete").write_text("")
    (step / "trainer_state.json").write_text("{}")
    snapshot = {p: p.read_bytes() for p in [*ws.models.rglob("*"), *ws.runs.rglob("*")] if p.is_file()}

    def export_to(output: Path, *flags: str, source: str = "tiny") -> tuple[int, str]:
        code = export.main(
            ["--checkpoint", str(ws.models / source), "--output", str(output), "--dtype", "float32", *flags]
        )
        return code, capsys.readouterr().err

    for output in (step, ws.models / "tiny8"):  # a run's checkpoint; the workspace's configured LM
        code, err = export_to(output, "--overwrite")
        assert code == 2 and ("is a training checkpoint" in err or "is the workspace's LM" in err), err
    code, err = export_to(ws.models / "tiny-copy")  # fresh: written
    assert code == 0, err
    assert "not the output of an earlier init" in ft.on_init(ws, *init_values(output="models/tiny-copy"))
    code, err = export_to(ws.models / "tiny", source="tiny-copy")  # an init's output, the runs' base model
    assert code == 2 and "is not the output of an earlier export" in err and "--overwrite" in err, err
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert initialise.main(["--source", str(ws.models / "tiny8"), "--output", str(ws.models / "tiny")]) == 0  # its own
    assert ft.on_init(ws, *init_values(output="models/tiny-copy", overwrite=True)).startswith("✔")


# ---------------------------------------------------------------- 14: what a run records when it ends


def start_job(workspace: Path, script: str) -> "object":
    """A job of the workspace's runs/ whose command is `python -c script` (in the job folder), under the supervisor."""
    import sys

    from backend.jobs import launcher
    from backend.jobs.folder import COMMAND_FILE, mark_queued, new_job, write_json

    job = new_job(workspace / "runs", "probe")
    command = {
        "argv": [sys.executable, "-c", script],
        "env": {},
        "cwd": str(job.dir),
        "display": "probe",
        "devices": ["cpu"],
        "module": "probe",
        "finish": [],
    }
    write_json(job.dir / COMMAND_FILE, command)
    mark_queued(job)
    launcher.launch(job, lambda: command)
    return job


def ended(job: "object") -> dict:
    from handler_helpers import wait_for

    from backend.jobs import control

    wait_for(lambda: control.status(job).get("state") != "running", 60, "the job's end")  # type: ignore[arg-type]
    return control.status(job)  # type: ignore[arg-type]


def test_a_run_whose_trainer_finished_is_finished_though_its_launcher_was_killed(tmp_path: Path) -> None:
    script = (
        "import json, os, signal; open('metrics.jsonl', 'a').write(json.dumps({'event': 'finished', 'step': 3})"
        " + '\\n'); os.kill(os.getpid(), signal.SIGKILL)"
    )
    st = ended(start_job(tmp_path, script))
    assert st["state"] == "finished" and st["exit_code"] == -9, st


def test_a_full_disk_during_a_checkpoint_gives_the_run_a_message(tmp_path: Path) -> None:
    script = "import errno, os; raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'checkpoints/.step-3.partial')"
    st = ended(start_job(tmp_path, script))
    assert st["state"] == "failed" and st["message"].startswith("the disk is full: free some space"), st
    assert "No space left on device" in st["message"]


def test_a_full_disk_during_build_or_export_is_a_message(
    tmp_path: Path, assets: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import errno
    import os

    import pyarrow.parquet as pq
    from test_hostile_data import token_folders

    from backend.dataset import build
    from backend.models import export

    def full(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq, "write_table", full)
    assert build.main(token_folders(tmp_path) + ["--output", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "-001-of-001.parquet: not written, the disk is full" in err and "Traceback" not in err, err
    monkeypatch.setattr(export, "write_tensors", full)
    out = tmp_path / "export"
    assert export.main(["--checkpoint", str(assets / "models" / "tiny"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: not written, the disk is full" in err and not out.exists(), err


def test_a_path_component_over_255_characters_is_a_message(tmp_path: Path, assets: Path) -> None:
    from test_handlers_finetune import init_values

    from studio import finetune_tab as ft

    ws = make_workspace(tmp_path, assets)
    message = ft.on_init(ws, *init_values(output="models/" + "x" * 300))
    assert message.startswith("✘ output: the name 'xxxx") and "at most 255 bytes" in message, message
    message = ft.on_export(ws, "run-" + "y" * 300, True)
    assert "Errno" not in message and "255" in message, message
