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


def test_audio_beyond_the_duration_limit_is_refused_before_decoding(ws, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
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
    from backend.data.transcripts import MAX_WORDS
    from test_bad_inputs import stereo, transcript

    up = tmp_path / "up"
    up.mkdir()
    dense = [{"speaker": "A", "word": f"w{i}", "start": i / 100, "end": i / 100 + 0.01} for i in range(100)]
    huge = [{"speaker": "A", "word": "x", "start": 0.1, "end": 0.2}] * (MAX_WORDS + 1)
    long_word = [{"speaker": "A", "word": "x" * 2_000_000, "start": 0.1, "end": 0.2}]
    files = [stereo(up / "dense.wav"), transcript(up / "dense.json", dense), stereo(up / "huge.wav"),
             transcript(up / "huge.json", huge), stereo(up / "long.wav"), transcript(up / "long.json", long_word)]
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
    message, _, chosen = data_tab.on_upload(ws, [str(stereo(up / "demo_cafe.wav")), str(transcript(up / "demo_cafe.json"))])
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
    return curate.on_edit(ws, name, json.dumps(event))[0]


def test_a_lone_surrogate_in_a_curate_edit_is_refused_and_the_dialogue_stays_usable(ws) -> None:  # type: ignore[no-untyped-def]
    from backend.data.transcripts import load_transcript

    before = load_transcript(ws.raw / "demo_cafe.json").words
    message = curate.on_edit(ws, "demo_cafe", '{"op": "text", "i": 0, "text": "caf\\ud800"}')[0]
    assert message.startswith("✘") and "lone surrogate" in message, message
    message, preview = curate.on_curate_pick(ws, "demo_cafe")
    assert 'class="ms-curate"' in preview and "unsaved" not in message
    assert edit(ws, "demo_cafe", op="text", i=0, text="x" * 201).startswith("✘ a word of 201 characters")
    assert curate.on_save(ws, "demo_cafe")[0].startswith("✔ saved")
    assert load_transcript(ws.raw / "demo_cafe.json").words == before


def test_a_save_never_writes_a_transcript_that_fails_validation(ws, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The editor's own checks passed, the importer's did not (here: a word past the bound, slipped in): not written."""
    import dataclasses

    from backend.data.annotate.edit import TranscriptEditor

    curate.on_curate_pick(ws, "demo_cafe")
    editor = curate._editor(curate._dialogue(ws, "demo_cafe"))
    editor.words[0] = dataclasses.replace(editor.words[0], word="y\ud800")
    before = (ws.raw / "demo_cafe.json").read_bytes()
    message, _ = curate.on_save(ws, "demo_cafe")
    assert message.startswith("✘ demo_cafe.json: not saved") and "surrogate" in message, message
    assert (ws.raw / "demo_cafe.json").read_bytes() == before and not list(ws.raw.glob(".demo_cafe.json.*"))
    assert TranscriptEditor.open(ws.raw / "demo_cafe.json").words[0].word != "y\ud800"


def test_an_empty_transcript_stays_editable(ws) -> None:  # type: ignore[no-untyped-def]
    from backend.data.transcripts import load_transcript

    count = len(load_transcript(ws.raw / "demo_cafe.json").words)
    for _ in range(count):
        assert edit(ws, "demo_cafe", op="delete", i=0).startswith("✔")
    message, _ = curate.on_save(ws, "demo_cafe")
    assert message.startswith("✘ demo_cafe.json: not saved, no words are left"), message
    assert len(load_transcript(ws.raw / "demo_cafe.json").words) == count
    (ws.raw / "demo_cafe.json").write_text("[]")  # what annotating a recording without speech writes
    message, preview = curate.on_curate_pick(ws, "demo_cafe")
    assert not message.startswith("✘") and 'class="ms-curate"' in preview, message
    assert edit(ws, "demo_cafe", op="insert", speaker="A", text="hello", start=0.5, end=0.9).startswith("✔")
    assert curate.on_save(ws, "demo_cafe")[0].startswith("✔ saved")
    assert [w.word for w in load_transcript(ws.raw / "demo_cafe.json").words] == ["hello"]
