"""The Data tab's Curate handlers called directly (no browser): audio-only import, Annotate (pocketsphinx on a
short clip), hostile edit events, every edit, undo, save keeping the original, swap, exclude and Build's rule."""

import json
import time
from pathlib import Path

import pytest
import soundfile
from handler_helpers import escapes, make_workspace

from backend.core.paths import ASSETS
from backend.data.transcripts import load_transcript
from backend.dataset.selection import left_out
from studio import curate, data_tab
from studio.alignment_view import LOW_CONFIDENCE
from studio.context import StudioContext

CURATOR = curate.Curator()  # the editors one studio keeps open (tests use their own workspaces)


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_workspace(tmp_path)


def short_clip(folder: Path, name: str, seconds: float = 3.0) -> Path:
    """The first seconds of a demo dialogue as a stereo recording with no transcript."""
    folder.mkdir(parents=True, exist_ok=True)
    audio, sr = soundfile.read(str(ASSETS / "demo" / "demo_cafe.flac"))
    soundfile.write(str(folder / f"{name}.wav"), audio[: int(seconds * sr)], sr)
    return folder / f"{name}.wav"


def edit(ws, name: str, **event) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    return CURATOR.on_edit(ws, name, json.dumps(event))


def test_audio_alone_is_imported_for_annotation_and_bad_audio_is_not(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = short_clip(tmp_path / "up", "call")
    (tmp_path / "up" / "call.txt").write_text("A: hello\nB: hi there\n")
    message, names, chosen = data_tab.on_upload(ws, [str(clip), str(tmp_path / "up" / "call.txt")])
    assert "needs annotation" in message and chosen == "call" and "call" in names
    assert (ws.raw / "call.wav").is_file() and (ws.raw / "call.txt").is_file()
    assert ("call (needs annotation)", "call") in curate.dialogue_labels(ws)
    assert CURATOR.on_curate_pick(ws, "call") == ("**call**: needs annotation (press Annotate)", "")
    mono = tmp_path / "up" / "mono.wav"
    soundfile.write(str(mono), [0.0] * 24000, 24000)
    bad_turns = tmp_path / "up" / "turns.txt"
    bad_turns.write_text("C: who\n")
    short_clip(tmp_path / "up", "turns")
    message, _, chosen = data_tab.on_upload(ws, [str(mono), str(tmp_path / "up" / "turns.wav"), str(bad_turns)])
    assert (
        "mono.wav: is mono" in message and str(tmp_path) not in message and "'A:' or 'B:'" in message and chosen is None
    )
    assert not list(ws.raw.glob("mono*")) and not list(ws.raw.glob("turns*"))


def test_annotate_shows_the_words_with_their_confidence(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    short_clip(ws.raw, "call")
    assert CURATOR.on_annotate(ws, "call", "nonsense", "")[0].startswith("✘ engine")
    for escape in escapes(tmp_path):  # a local Whisper folder must be in the workspace
        assert "not inside the workspace" in CURATOR.on_annotate(ws, "call", "whisper", escape)[0]
    assert not (ws.raw / "call.json").exists()
    steps: list[float] = []
    message, preview = CURATOR.on_annotate(ws, "call", "pocketsphinx", "", lambda f, m: steps.append(f))
    assert "annotated call" in message and steps and steps[-1] == 1.0
    words = load_transcript(ws.raw / "call.json").words
    assert words and preview.count('class="word') == len(words) and 'data-i="0"' in preview
    confidences = [w["confidence"] for w in json.loads((ws.raw / "call.json").read_text())]
    assert preview.count(" ms-low") == sum(c < LOW_CONFIDENCE for c in confidences)
    assert "cur-bar" in preview and 'data-op="merge"' in preview
    assert "annotated nothing new" in CURATOR.on_annotate(ws, "call", "pocketsphinx", "")[0]  # resumable


def test_annotate_with_a_whisper_folder_of_the_workspace(ws) -> None:  # type: ignore[no-untyped-def]
    """The engine picked in the tab and a Whisper folder named relative to the workspace (a tiny random model
    built offline) reach the run, which records them."""
    pytest.importorskip("transformers")
    from annotate_helpers import build_tiny_whisper

    model = build_tiny_whisper(ws.models / "tiny-whisper")
    short_clip(ws.raw, "call")
    message, preview = CURATOR.on_annotate(ws, "call", "whisper", " models/tiny-whisper ")
    assert "annotated call" in message and "✘" not in message, message
    record = json.loads((ws.raw / "call.annotation.json").read_text())
    assert record["engine"]["engine"] == "whisper" and record["engine"]["model"] == str(model.resolve())
    assert preview.count('class="word') == len(load_transcript(ws.raw / "call.json").words)
    (ws.raw / "call.txt").write_text("A: hello\nB: hi there\n")  # alignment mode: Whisper cannot place words
    (ws.raw / "call.json").unlink()
    message, _ = CURATOR.on_annotate(ws, "call", "whisper", "models/tiny-whisper")
    assert "✘ call" in message and "pocketsphinx" in message and not (ws.raw / "call.json").exists()


@pytest.mark.parametrize(
    "event",
    [
        "not json",
        "[]",
        '{"op": "rm -rf"}',
        "{" + " " * 3000 + "}",
        None,
        '{"op": "text", "i": 10000, "text": "x"}',
        '{"op": "text", "i": true, "text": "x"}',
        '{"op": "text", "i": 0, "text": "' + "x" * 300 + '"}',
        '{"op": "text", "i": 0, "text": "  "}',
        '{"op": "times", "i": 0, "start": 1e9, "end": 2e9}',
        '{"op": "times", "i": 0, "start": 2, "end": 1}',
        '{"op": "times", "i": 0, "start": "NaN", "end": 1}',
        '{"op": "insert", "speaker": "C", "text": "x", "start": 1, "end": 2}',
        '{"op": "split", "i": 0, "at": 100, "first": "a", "second": "b"}',
        '{"op": "merge", "i": 0, "j": -1}',
    ],
)
def test_hostile_edit_events_are_refused_and_change_nothing(ws, event: str) -> None:  # type: ignore[no-untyped-def]
    before = (ws.raw / "demo_cafe.json").read_bytes()
    CURATOR.on_curate_pick(ws, "demo_cafe")
    message, preview = CURATOR.on_edit(ws, "demo_cafe", event)
    assert message.startswith("✘") and 'class="ms-align"' in preview
    assert "Undo" not in CURATOR.on_curate_pick(ws, "demo_cafe")[0]  # no edit was recorded
    assert (ws.raw / "demo_cafe.json").read_bytes() == before
    assert CURATOR.on_edit(ws, "../../etc/passwd", '{"op": "delete", "i": 0}')[0].startswith("✘")


def test_every_edit_then_undo_and_an_atomic_save_keeping_the_original(ws) -> None:  # type: ignore[no-untyped-def]
    path = ws.raw / "demo_cafe.json"
    original = path.read_bytes()
    CURATOR.on_curate_pick(ws, "demo_cafe")
    first = load_transcript(path).words
    n = len(first)
    msg, preview = edit(ws, "demo_cafe", op="text", i=0, text="Howdy")
    assert "'Howdy'" in msg and 'data-selected="1"' in preview
    assert "0.50..0.90" in edit(ws, "demo_cafe", op="times", i=0, start=0.5, end=0.9)[0]
    edit(ws, "demo_cafe", op="insert", speaker="B", text="mhm", start=0.1, end=0.2)
    msg, _ = edit(ws, "demo_cafe", op="split", i=0, at=0.15, first="mm", second="hm")
    assert "'mm'" in msg
    assert "'mm hm'" in edit(ws, "demo_cafe", op="merge", i=0, j=1)[0]
    assert "deleted" in edit(ws, "demo_cafe", op="delete", i=0)[0]
    assert path.read_bytes() == original  # nothing written before Save
    assert CURATOR.on_undo(ws, "demo_cafe")[0].startswith("✔ undone")  # the delete taken back
    msg, _ = CURATOR.on_save(ws, "demo_cafe")
    assert "original stays in demo_cafe.original.json" in msg
    assert (ws.raw / "demo_cafe.original.json").read_bytes() == original
    saved = load_transcript(path).words
    assert len(saved) == n + 1 and any(w.word == "mm hm" and w.speaker == "B" for w in saved)
    assert any(w.word == "Howdy" and (w.start, w.end) == (0.5, 0.9) for w in saved)
    assert not list(ws.raw.glob("*.tmp*"))
    time.sleep(0.01)
    path.write_bytes(original)  # replaced from outside (a new upload): the editor reads the file afresh
    assert CURATOR.on_curate_pick(ws, "demo_cafe")[1].count('class="word') == n


def test_unsaved_edits_belong_to_one_studio(ws) -> None:  # type: ignore[no-untyped-def]
    """Two studios (their contexts) over one workspace: each sees only its own unsaved edits; the file is the
    meeting point once saved."""
    one, other = StudioContext(ws), StudioContext(ws)
    one.curator.on_edit(ws, "demo_cafe", json.dumps({"op": "text", "i": 0, "text": "mine"}))
    assert "unsaved edits" in one.curator.on_curate_pick(ws, "demo_cafe")[0]
    assert "unsaved edits" not in other.curator.on_curate_pick(ws, "demo_cafe")[0]
    assert 'data-i="0"' in other.curator.on_curate_pick(ws, "demo_cafe")[1]
    assert ">mine<" not in other.curator.on_curate_pick(ws, "demo_cafe")[1]
    one.curator.on_save(ws, "demo_cafe")
    assert ">mine<" in other.curator.on_curate_pick(ws, "demo_cafe")[1]


def test_swap_and_exclude_reach_the_files_the_list_and_build(ws) -> None:  # type: ignore[no-untyped-def]
    audio, _ = soundfile.read(str(ws.raw / "demo_weekend.flac"))
    speakers = [w.speaker for w in load_transcript(ws.raw / "demo_weekend.json").words]
    assert "swapped" in CURATOR.on_swap(ws, "demo_weekend")[0]
    swapped, _ = soundfile.read(str(ws.raw / "demo_weekend.flac"))
    assert (swapped[:, 0] == audio[:, 1]).all() and (swapped[:, 1] == audio[:, 0]).all()
    assert [w.speaker for w in load_transcript(ws.raw / "demo_weekend.json").words] == [
        {"A": "B", "B": "A"}[s] for s in speakers
    ]
    assert (ws.raw / "demo_weekend.original.json").is_file()
    assert "left out" in CURATOR.on_exclude(ws, "demo_weekend", True)[0]
    assert curate.excluded(ws, "demo_weekend") and left_out(ws) == {"demo_weekend": "excluded"}
    assert ("demo_weekend (excluded)", "demo_weekend") in curate.dialogue_labels(ws)
    assert "demo_weekend" in data_tab.dialogue_names(ws)  # still listed, still editable
    CURATOR.on_exclude(ws, "demo_weekend", False)
    assert left_out(ws) == {} and not curate.excluded(ws, "demo_weekend")


def test_build_leaves_an_excluded_dialogue_out(demo_workspace) -> None:  # type: ignore[no-untyped-def]
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig

    ws = demo_workspace
    CURATOR.on_exclude(ws, "demo_weekend", True)
    try:
        result = prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))
    finally:
        CURATOR.on_exclude(ws, "demo_weekend", False)
    assert result.dataset.rows == 2 and "1 excluded" in result.markdown() and "demo_weekend" not in result.markdown()
    assert not result.dataset.missing_audio and not result.dataset.missing_text
