"""A user's own data (issue 24, part 3): an empty workspace, and two mono recordings made one stereo dialogue."""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.core.errors import ConfigError, InputError
from backend.core.workspace import KYUTAI_REPO, create_empty_workspace, open_workspace
from backend.data.mono_pair import MonoPairConfig, join_mono
from backend.data.mono_pair import main as join_main
from backend.demo.workspace import main as workspace_main


def test_empty_workspace(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No demo dialogue in raw/ (they would join every Build), the demo models off, real weights named."""
    assert workspace_main(["init", str(tmp_path / "mine")]) == 0
    ws = open_workspace(tmp_path / "mine")
    assert all(f.is_dir() for f in ws.folders()) and not list(ws.raw.iterdir())
    assert not ws.settings.demo and ws.settings.lm == ws.settings.mimi == KYUTAI_REPO
    assert "MISSING" in capsys.readouterr().out  # the tokenizer is to be put there: the description says so
    with pytest.raises(ConfigError, match="is a workspace already"):
        create_empty_workspace(tmp_path / "mine")
    local = create_empty_workspace(tmp_path / "local", mimi="models/mimi", lm="models/lm", tokenizer="spm.model")
    assert open_workspace(local.root).settings.lm == "models/lm"
    with pytest.raises(InputError, match="workspace init"):
        open_workspace(tmp_path / "nothing")


def _tone(seconds: float, sr: int, freq: float) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_two_mono_recordings_become_one_dialogue(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sf.write(tmp_path / "a.wav", _tone(3.0, 16000, 220), 16000)
    sf.write(tmp_path / "b.flac", _tone(2.5, 8000, 330), 8000)
    out = tmp_path / "raw" / "call.wav"
    joined = join_mono(MonoPairConfig(a=tmp_path / "a.wav", b=tmp_path / "b.flac", output=out, offset=0.5))
    audio, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and audio.shape == (48000, 2) and joined.seconds == 3.0  # B resampled to the higher rate
    assert not np.any(audio[:8000, 1]) and np.abs(audio[8000:8400, 1]).max() > 0.1  # B starts 0.5 s later
    np.testing.assert_allclose(audio[:, 0], _tone(3.0, 16000, 220), atol=1e-4)
    assert joined.padded == {"A": 0.0, "B": 0.5}
    with pytest.raises(ConfigError, match="exists already"):
        join_mono(MonoPairConfig(a=tmp_path / "a.wav", b=tmp_path / "b.flac", output=out))
    # Lengths far apart: refused with both lengths, nothing written.
    sf.write(tmp_path / "long.wav", _tone(9.0, 16000, 220), 16000)
    with pytest.raises(InputError, match=r"lasts 9.00 s against A's 3.00 s"):
        join_mono(MonoPairConfig(a=tmp_path / "a.wav", b=tmp_path / "long.wav", output=tmp_path / "x.wav"))
    assert not (tmp_path / "x.wav").exists()
    sf.write(tmp_path / "stereo.wav", np.zeros((100, 2), np.float32), 16000)
    assert (
        join_main(
            ["--a", str(tmp_path / "stereo.wav"), "--b", str(tmp_path / "a.wav"), "--output", str(tmp_path / "y.wav")]
        )
        == 2
    )
    assert "stereo.wav" in capsys.readouterr().err
    assert (
        join_main(
            [
                "--a",
                str(tmp_path / "a.wav"),
                "--b",
                str(tmp_path / "b.flac"),
                "--offset",
                "-0.25",
                "--output",
                str(tmp_path / "z.flac"),
            ]
        )
        == 0
    )
    assert "A +0.25 s of silence" in capsys.readouterr().out and sf.info(str(tmp_path / "z.flac")).channels == 2


def _tokens(folder: Path, names: list[str]) -> tuple[Path, Path]:
    audio, text = folder / "audio", folder / "text"
    audio.mkdir(parents=True)
    text.mkdir(parents=True)
    for i, name in enumerate(names):
        np.savez(audio / f"{name}.npz", A=np.full((8, 5 + i), i), B=np.full((8, 5 + i), i))
        np.savez(text / f"{name}.npz", A=np.full(5 + i, 7), B=np.full(5 + i, 8))
    return audio, text


def test_build_holds_out_a_validation_split(tmp_path: Path) -> None:
    """Whole dialogues, seeded, in dataset/validation/ (a folder of its own: the training shards' folder holds
    none of them); a fraction or a list; the studio's fine-tune form then takes it as eval data."""
    from backend.dataset.build import DatasetConfig, build_dataset
    from backend.dataset.read import list_dialogues
    from studio.finetune_tab import held_out_data

    names = [f"d{i:02d}" for i in range(10)]
    audio, text = _tokens(tmp_path / "tokens", names)
    ws = create_empty_workspace(tmp_path / "ws")
    assert held_out_data(ws) is None

    def build(validation: str, seed: int = 0) -> tuple[list[str], list[str]]:
        report = build_dataset(
            DatasetConfig(
                audio_tokens=audio, text_tokens=text, output=ws.dataset, validation=validation, split_seed=seed
            )
        )
        train = [i.split("/")[1] for i in list_dialogues(ws.dataset)]
        held = [i.split("/")[1] for i in list_dialogues(ws.dataset / "validation")] if report.validation else []
        assert held == report.validation and report.rows == len(names)
        return train, held

    train, held = build("0.2")
    assert len(held) == 2 and sorted(train + held) == names and not set(train) & set(held)
    assert build("0.2") == (train, held) and build("0.2", seed=1) != (train, held)  # seeded
    assert held_out_data(ws) == "dataset/validation"
    assert build("d03, d07")[1] == ["d03", "d07"]
    assert build("")[1] == [] and held_out_data(ws) is None  # no split: the old one is gone
    for bad, problem in (
        ("d99", "no dialogue named d99"),
        ("1.5", "between 0 and 1"),
        (",".join(names), "none to train"),
    ):
        with pytest.raises(ConfigError, match=problem):
            build(bad)


def test_validation_report_shows_levels_and_resampling(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from backend.data.validate import ValidateConfig, report, validate_folder

    stereo = np.stack([_tone(2.0, 8000, 220), _tone(2.0, 8000, 330) * 0.1], axis=1)
    sf.write(tmp_path / "call.wav", stereo, 8000, subtype="PCM_16")
    (tmp_path / "call.json").write_text('[{"speaker": "A", "word": "hi", "start": 0.1, "end": 0.4}]')
    (r,), _ = validate_folder(tmp_path)
    facts = r.audio_facts()
    assert "8000 Hz (resampled to 24000 Hz for Mimi)" in facts
    assert "A: RMS -13.5 dBFS, peak -10.5 dBFS" in facts and "B: RMS -33.5 dBFS, peak -30.4 dBFS" in facts, facts
    assert report(ValidateConfig(input=tmp_path)) == 0 and f"audio: {facts}" in capsys.readouterr().out


@pytest.mark.slow
def test_studio_build_holds_out_what_the_form_says(tmp_path: Path) -> None:
    """The Data tab's Build with a validation name: that dialogue is in dataset/validation/, the message says so,
    and a new fine-tune form starts with it as eval data."""
    from backend.dataset.read import list_dialogues
    from backend.dataset.tokenize_text import TextTokenizeConfig
    from backend.demo.workspace import create_demo_workspace
    from studio import data_tab
    from studio.finetune_tab import held_out_data

    ws = create_demo_workspace(tmp_path / "ws")
    layout = [getattr(TextTokenizeConfig(), n) for n in data_tab.LAYOUT_FIELDS]
    message = data_tab.on_build(ws, None, False, *layout, "demo_cafe", 0)
    assert message.startswith("✔ 3 dialogues") and "Held out for validation" in message and "demo_cafe" in message
    assert list_dialogues(ws.dataset / "validation") == ["train/demo_cafe"]
    assert "train/demo_cafe" not in list_dialogues(ws.dataset) and held_out_data(ws) == "dataset/validation"
    assert data_tab.on_build(ws, None, False, *layout, "demo_nowhere", 0).startswith("✘ validation: no dialogue")


def test_data_tab_joins_two_uploaded_mono_recordings(tmp_path: Path) -> None:
    """The Data tab's handler: the pair lands in raw/ under the typed name, the uploads are removed; a name with
    folders, a name already taken, or a missing speaker is refused with nothing written."""
    from studio.data_tab import on_join_mono

    ws = create_empty_workspace(tmp_path / "ws")
    uploads = tmp_path / "uploads"
    uploads.mkdir()

    def upload(name: str, seconds: float, freq: float) -> str:
        sf.write(uploads / name, _tone(seconds, 16000, freq), 16000)
        return str(uploads / name)

    message, names, shown = on_join_mono(
        ws, upload("caller.wav", 2.0, 220), upload("agent.wav", 1.8, 330), "call1", 0.2
    )
    assert message.startswith("✔ Joined into **call1.wav**") and names == ["call1"] and shown == "call1", message
    assert sf.info(str(ws.raw / "call1.wav")).channels == 2
    for name, problem in (("../out", "a plain file name"), ("call1", "already has call1.wav")):
        message, _, shown = on_join_mono(ws, upload("a.wav", 1.0, 220), upload("b.wav", 1.0, 330), name, 0)
        assert problem in message and shown is None, message
    assert on_join_mono(ws, upload("a.wav", 1.0, 220), None, "x", 0)[0].startswith("✘ upload one mono recording")
    assert sorted(p.name for p in ws.raw.iterdir()) == ["call1.wav"] and not (tmp_path / "out.wav").exists()


def test_launch_starts_a_new_workspace_empty_when_asked(tmp_path: Path) -> None:
    """`launch.py --workspace NEW --start empty`: the studio serves an empty workspace (no demo dialogues, the
    demo models off); the page shows no demo banner."""
    import httpx
    from conftest import stop_process
    from test_security import start_studio

    proc, studio = start_studio(tmp_path / "mine", tmp_path, ["--start", "empty"])
    try:
        ws = open_workspace(tmp_path / "mine")
        assert not ws.settings.demo and not list(ws.raw.iterdir()) and not ws.demo_lm.exists()
        assert httpx.get(studio.url, timeout=30).status_code == 200
        assert "Moshi Studio on" in studio.log.read_text() and str(ws.root) in studio.log.read_text()
    finally:
        stop_process(proc)


def test_the_finetune_form_takes_each_builds_split_as_eval_data(tmp_path: Path) -> None:
    """The Fine-tune form's eval data as its tab is shown: a Build's validation split fills an empty field, once
    per Build; a value the user typed, or a field cleared after the offer, stays; a preset keeps the split."""
    from backend.dataset.build import DatasetConfig, build_dataset
    from studio.finetune_tab import DEMO_PRESET, FIELDS, on_preset, on_shown_eval

    audio, text = _tokens(tmp_path / "tokens", [f"d{i:02d}" for i in range(10)])
    ws = create_empty_workspace(tmp_path / "ws")

    def build(validation: str, seed: int = 0) -> None:
        build_dataset(
            DatasetConfig(
                audio_tokens=audio, text_tokens=text, output=ws.dataset, validation=validation, split_seed=seed
            )
        )

    build("")
    assert on_shown_eval(ws, "", None) == ("", None)  # no split: nothing offered
    build("0.2")
    value, offered = on_shown_eval(ws, "", None)
    assert value == "dataset/validation" and offered is not None
    assert on_shown_eval(ws, "", offered) == ("", offered)  # cleared by the user after the offer: stays empty
    assert on_shown_eval(ws, "dataset/mine", None) == ("dataset/mine", offered)  # typed: kept
    build("0.2", seed=1)  # a new Build: offered again to an empty field, never over a typed one
    value, again = on_shown_eval(ws, " ", offered)
    assert value == "dataset/validation" and again not in (None, offered)
    assert on_shown_eval(ws, "dataset/mine", offered) == ("dataset/mine", again)
    assert dict(zip(FIELDS, on_preset(DEMO_PRESET, ws)))["eval_data"] == "dataset/validation"
    assert dict(zip(FIELDS, on_preset(DEMO_PRESET)))["eval_data"] == ""
    build("")  # the split is gone: the field is left as it is (the form's check then names the missing folder)
    assert on_shown_eval(ws, "dataset/validation", again) == ("dataset/validation", again)


@pytest.mark.browser
def test_a_build_in_a_running_studio_fills_the_finetune_eval_data(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """In a real browser: the Fine-tune tab opened before a Build has no eval data; shown again after a Build with a
    validation split, it has the split; a value typed there survives the next Build."""
    from conftest import stop_process
    from playwright.sync_api import expect
    from test_start_page import launch

    from backend.dataset.build import DatasetConfig, build_dataset

    proc, url = launch(tmp_path / "ws", tmp_path / "studio.log", "--start", "empty")
    ws = open_workspace(tmp_path / "ws")
    audio, text = _tokens(tmp_path / "tokens", [f"d{i:02d}" for i in range(10)])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    label = page.locator("span[data-testid=block-info]", has_text=re.compile(r"^\s*eval data\s*$"))
    box = page.locator("label", has=label).locator("textarea")

    def show_finetune_after_build(seed: int) -> None:
        page.get_by_role("tab", name="Data").click()
        build_dataset(
            DatasetConfig(audio_tokens=audio, text_tokens=text, output=ws.dataset, validation="0.2", split_seed=seed)
        )
        page.get_by_role("tab", name="Fine-tune").click()

    try:
        page.goto(url)
        page.get_by_role("tab", name="Fine-tune").click()
        box.wait_for(timeout=60_000)
        page.wait_for_timeout(1_000)
        assert box.input_value() == ""
        show_finetune_after_build(0)
        expect(box).to_have_value("dataset/validation", timeout=30_000)
        box.fill("dataset/mine")
        show_finetune_after_build(1)
        page.wait_for_timeout(2_000)  # the tab's shown events have run
        assert box.input_value() == "dataset/mine"
        assert not errors, errors
    finally:
        page.close()
        stop_process(proc)
