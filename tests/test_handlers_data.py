"""The Data and Timeline tabs' handlers called directly (no browser): upload, list, pick, statistics, rows."""

import shutil
from pathlib import Path

import pytest
import soundfile
from handler_helpers import make_workspace

from backend.core.paths import ASSETS
from studio import data_tab, timeline_tab


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_workspace(tmp_path)


def uploaded(tmp_path: Path, name: str, *suffixes: str) -> list[str]:
    """Copies of a demo dialogue's files under a new name, as Gradio hands an upload over."""
    folder = tmp_path / "upload"
    folder.mkdir(exist_ok=True)
    for suffix in suffixes:
        shutil.copyfile(ASSETS / "demo" / f"demo_cafe{suffix}", folder / f"{name}{suffix}")
    return [str(folder / f"{name}{s}") for s in suffixes]


def test_an_uploaded_pair_is_imported_listed_and_chosen(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    message, names, chosen = data_tab.on_upload(ws, uploaded(tmp_path, "mine", ".flac", ".json"))
    assert message.startswith("✔ Imported **mine**") and chosen == "mine" and "mine" in names
    assert (ws.raw / "mine.flac").is_file() and (ws.raw / "mine.json").is_file()


def test_a_lone_transcript_is_refused_and_nothing_is_written(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    message, _, chosen = data_tab.on_upload(ws, uploaded(tmp_path, "lonely", ".json"))
    assert message.startswith("✘") and "no audio" in message and chosen is None
    assert not list(ws.raw.glob("lonely*"))
    assert data_tab.on_upload(ws, None)[0] == ""


def test_listing_keeps_the_pick_and_shows_report_and_preview(ws) -> None:  # type: ignore[no-untyped-def]
    names, picked = data_tab.on_shown(ws, None)
    assert names == ["demo_cafe", "demo_directions", "demo_weekend"] and picked == "demo_cafe"
    assert data_tab.on_shown(ws, "demo_weekend") == (names, "demo_weekend")
    report, preview = data_tab.on_pick(ws, "demo_weekend")
    assert "✔ demo_weekend" in report and 'class="ms-align"' in preview and 'class="word' in preview
    assert data_tab.on_pick(ws, "../../etc/passwd") == ("../../etc/passwd: no longer in the workspace", "")
    assert data_tab.on_pick(ws, None) == ("", "")


def test_an_upload_then_its_view_decode_the_audio_twice_a_pick_once(
    ws,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decodes: list[str] = []
    read = soundfile.blocks  # the validation and the preview read audio in blocks (memory bounded by the block)
    monkeypatch.setattr(soundfile, "blocks", lambda file, *a, **k: decodes.append(str(file)) or read(file, *a, **k))
    _, _, chosen = data_tab.on_upload(ws, uploaded(tmp_path, "mine", ".flac", ".json"))
    data_tab.on_pick(ws, chosen)  # the upload sets the pick: the browser then asks for its view
    assert len(decodes) == 2  # the import's validation, then report + preview together
    decodes.clear()
    data_tab.on_pick(ws, "demo_cafe")
    assert decodes == [str(ws.raw / "demo_cafe.flac")]


def test_statistics_of_the_valid_dialogues(ws) -> None:  # type: ignore[no-untyped-def]
    text, gaps = data_tab.stats_outputs(ws)
    assert text.startswith("**3 dialogues**") and gaps["turns"].sum() > 0


def test_timeline_without_a_dataset_lists_nothing_and_says_what_to_do(ws) -> None:  # type: ignore[no-untyped-def]
    assert timeline_tab.on_refresh(ws, "x") == ([], None)
    status, html = timeline_tab.on_show(ws, None, 0, 3.2, "A")
    assert status.startswith("✘ Pick a dataset row first") and html == ""


def test_no_trigger_has_two_always_last_listeners(ws) -> None:  # type: ignore[no-untyped-def]
    """Gradio 6 re-fires a whole trigger when one of its deferred (always_last) listeners ends, so two such listeners
    of one trigger that overlap re-fire each other for good: a pick made while the last pick's views were loading
    looped, hammering the server and overwriting the tab's messages (the curate browser test's flake, issue 12);
    the Fine-tune and Preprocess forms had the same pairs on every field."""
    from backend.inference.chat_server import ChatService, workspace_chat_config
    from studio.app import build_blocks

    blocks = build_blocks(ws, ChatService(workspace_chat_config(ws)))
    deferred: dict[tuple, list[str]] = {}
    for d in blocks.config["dependencies"]:
        if d["trigger_mode"] == "always_last":
            for target in d["targets"]:
                deferred.setdefault(tuple(target), []).append(blocks.fns[d["id"]].name)
    pick = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "data-pick")
    assert (pick._id, "change") in deferred
    twice = {
        f"{getattr(blocks.blocks.get(t[0]), 'label', t[0])} {t[1]}": names
        for t, names in deferred.items()
        if len(names) > 1
    }
    assert not twice, twice
