"""The whole Data -> Timeline flow in a real browser against `launch.py` on the demo workspace."""

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest
from conftest import ARTIFACTS, REPO, free_port, stop_process
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


class Studio(NamedTuple):
    url: str
    workspace: Path


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """`python launch.py` on a fresh workspace, as a user starts it (the demo, chosen on the command line: the start
    page that asks is tests/test_start_page.py's)."""
    workspace = tmp_path_factory.mktemp("studio") / "workspace"
    port = free_port()
    log = open(workspace.parent / "studio.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--workspace", str(workspace), "--port", str(port), "--start", "demo"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"studio did not start: {(workspace.parent / 'studio.log').read_text()}")
                time.sleep(0.5)
        yield Studio(url, workspace)
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    """A fresh page that records page errors; closed afterwards so its timers stop polling the studio."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.console = []  # warnings and errors of the console (issue 14: Vega-Lite warnings for empty plots)
    page.on("console", lambda m: m.type in ("warning", "error") and page.console.append(m.text))
    yield page
    page.close()


def test_tabs_opened_late_list_what_is_new(studio: Studio, page) -> None:  # type: ignore[no-untyped-def]
    """Tabs opened long after the page loaded list their items, including ones added since (no reload)."""
    from backend.core.workspace import open_workspace
    from backend.models.source import LM_KWARGS

    ws = open_workspace(studio.workspace)
    page.goto(studio.url)
    page.locator("#data-preview .word").first.wait_for(timeout=60_000)
    page.wait_for_timeout(3_000)  # whatever the page loads at start has finished while these tabs were hidden
    late = ws.models / "late-lm"
    late.mkdir(exist_ok=True)
    shutil.copy(ws.demo_lm / LM_KWARGS, late / LM_KWARGS)  # a model folder that appeared after the page loaded
    for ext in (".flac", ".json"):
        shutil.copy(REPO / "assets" / "demo" / f"demo_cafe{ext}", ws.raw / f"late_cafe{ext}")
    try:
        for tab, dropdown, option in (
            ("Continuations", "#ct-model-a", "models/late-lm"),
            ("Chat", "#chat-model", "models/late-lm"),
            ("Data", "#data-pick", "late_cafe"),
        ):
            page.get_by_role("tab", name=tab).click()
            page.locator(f"{dropdown} input").click(timeout=30_000)  # no spinner left over the widget
            page.get_by_role("option", name=option, exact=True).wait_for(timeout=30_000)
            page.keyboard.press("Escape")
        assert not page.errors, page.errors
    finally:
        shutil.rmtree(late)
        for ext in (".flac", ".json"):
            (ws.raw / f"late_cafe{ext}").unlink()


def test_persona_fields_data_continuations_chat(studio: Studio, page) -> None:  # type: ignore[no-untyped-def]
    """A persona set in Data (role text + a clip of speaker A) is listed, and its voice is offered in
    Continuations and Chat, whose role text reaches the chat config."""
    from backend.core.workspace import open_workspace

    ws = open_workspace(studio.workspace)
    page.goto(studio.url)
    page.locator("#data-preview .word").first.wait_for(timeout=60_000)  # demo_cafe picked and previewed
    try:
        page.locator("#data-persona").get_by_text("Persona (PersonaPlex)").click()  # closed until wanted
        page.locator("#data-persona-text textarea").fill("You are a barista.")
        word = page.locator("#data-preview .ms-spk-A .word").first  # the preview's selection fills the clip
        word.click()
        page.locator("#data-persona-take").click()
        page.wait_for_function("document.querySelector('#data-persona-end input').value > 0")
        assert float(page.locator("#data-persona-end input").input_value()) == float(word.get_attribute("data-end"))
        page.locator("#data-persona-start input").fill("0.5")  # or typed
        page.locator("#data-persona-end input").fill("2")
        page.locator("#data-persona-save").click()
        page.locator("#data-persona-msg", has_text="✔").wait_for(timeout=30_000)
        page.locator("#data-personas", has_text="demo_cafe.A.wav").wait_for(timeout=30_000)
        assert "You are a barista." in page.locator("#data-personas").inner_text()
        assert (ws.root / "voices" / "demo_cafe.A.wav").is_file() and (ws.raw / "demo_cafe.persona.json").is_file()
        # A second persona joins the table at once (issue 21: it once showed only after a reload).
        page.locator("#data-pick input").click()
        page.get_by_role("option", name="demo_weekend", exact=True).click()
        page.locator("#data-report", has_text="demo_weekend").wait_for(timeout=30_000)
        page.locator("#data-persona-text textarea").fill("You are a friend.")
        page.locator("#data-persona-save").click()
        page.locator("#data-personas", has_text="You are a friend.").wait_for(timeout=30_000)
        assert "demo_cafe.A.wav" in page.locator("#data-personas").inner_text()
        for tab, voice, role in (("Continuations", "#ct-voice", "#ct-role"), ("Chat", "#chat-voice", "#chat-role")):
            page.get_by_role("tab", name=tab).click()
            page.locator(f"{voice} input").click(timeout=30_000)
            page.get_by_role("option", name="demo_cafe.A.wav", exact=True).click()
            assert page.locator(f"{voice} input").input_value() == "demo_cafe.A.wav"
            page.locator(f"{role} textarea").fill("You are a barista.")
        page.locator("#chat-load").click()
        page.locator("#chat-status", has_text="Ready").or_(page.locator("#chat-status", has_text="Error")).wait_for(
            timeout=120_000
        )
        assert "Ready" in page.locator("#chat-status").inner_text(), page.locator("#chat-status").inner_text()
        assert not page.errors, page.errors
    finally:  # later tests build the dataset without this persona
        for name in ("demo_cafe", "demo_weekend"):
            (ws.raw / f"{name}.persona.json").unlink(missing_ok=True)
            (ws.root / "voices" / f"{name}.A.wav").unlink(missing_ok=True)


def test_upload_preview_build_and_timeline(studio: Studio, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for ext in (".flac", ".json"):
        shutil.copy(REPO / "assets" / "demo" / f"demo_cafe{ext}", tmp_path / f"uploaded_cafe{ext}")
    page.goto(studio.url)
    page.get_by_text("Demo workspace.").wait_for()

    # Upload a dialogue: it is validated, imported, reported and previewed.
    page.locator("#data-upload input[type=file]").set_input_files(
        [str(tmp_path / "uploaded_cafe.flac"), str(tmp_path / "uploaded_cafe.json")]
    )
    page.locator("#data-upload-msg", has_text="Imported uploaded_cafe").wait_for(timeout=30_000)
    page.locator("#data-report", has_text="uploaded_cafe").wait_for(timeout=30_000)
    words = page.locator("#data-preview .word")
    words.first.wait_for(timeout=30_000)
    assert words.count() > 40
    assert page.locator("#data-preview .ms-lane").count() == 2
    assert page.locator("#data-preview .ms-overlaps *").count() > 0  # the demo has overlapping speech
    # Viewing another dialogue clears "Imported X".
    page.locator("#data-pick input").click()
    page.get_by_role("option", name="demo_weekend", exact=True).click()
    page.locator("#data-report", has_text="demo_weekend").wait_for(timeout=30_000)
    page.wait_for_function("!document.querySelector('#data-upload-msg').innerText.includes('Imported')", timeout=10_000)
    # The gap histogram: a numeric axis, the overlaps (negative gaps) left of zero.
    page.get_by_role("button", name="Dataset statistics").click()
    page.get_by_role("button", name="Compute statistics").click()
    page.locator("#data-stats", has_text="dialogues").wait_for(timeout=60_000)
    page.locator("#data-gaps canvas, #data-gaps svg").first.wait_for(timeout=30_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#data-gaps").screenshot(path=str(ARTIFACTS / "studio-gaps.png"))

    # Build the dataset of the workspace (3 demo dialogues + the upload).
    page.locator("#data-build").click()
    page.locator("#data-build-msg", has_text="4 dialogues").wait_for(timeout=120_000)

    # Timeline: pick the uploaded row, show it, play the window.
    page.get_by_role("tab", name="Timeline").click()
    page.get_by_role("button", name="↻ Refresh rows").click()
    pick = page.locator("#tl-pick input")
    pick.click()
    page.get_by_role("option", name="train/uploaded_cafe").click()
    # Shown on picking, no need to press Show (the row shown before may linger until the new one arrives).
    page.locator("#tl-grid .ms-tl", has_text="train/uploaded_cafe").wait_for(timeout=30_000)
    assert page.locator("#tl-grid .ms-pad").count() > 0
    page.locator("#tl-play").click()
    page.locator("#tl-audio [data-testid=waveform-controls]").wait_for(timeout=60_000)  # the decoded window is loaded
    page.wait_for_function(
        "(document.querySelector('#tl-audio').innerText.match(/\\d:\\d\\d/) || ['0:00'])[0] !== '0:00'", timeout=20_000
    )  # and it plays by itself
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio-timeline.png"), full_page=True)
    page.get_by_role("tab", name="Data").click()
    page.screenshot(path=str(ARTIFACTS / "studio-data.png"), full_page=True)
    page.get_by_role("tab", name="Fine-tune").click()  # its loss plot is empty: no chart, no warnings
    page.locator("#ft-command", has_text="backend.finetune.trainer").wait_for(timeout=3_000)  # filled at once
    page.wait_for_timeout(3_000)
    assert not page.errors, page.errors
    assert not [m for m in page.console if "Vega" in m or "Infinite extent" in m], page.console


def test_initialise_clears_the_missing_base_model_problem(studio: Studio, page) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: "base_model ... demo-lm-init not found" stayed under the form after a successful Initialise."""
    shutil.rmtree(studio.workspace / "models" / "demo-lm-init", ignore_errors=True)
    page.goto(studio.url)
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#ft-problem", has_text="demo-lm-init").wait_for(timeout=60_000)
    page.locator("#ft-init").click()
    page.get_by_text("✔ wrote").wait_for(timeout=120_000)
    page.wait_for_function("!document.querySelector('#ft-problem').innerText.includes('demo-lm-init')", timeout=30_000)
    assert not page.errors, page.errors


def built_dataset(workspace: Path) -> None:
    """The dataset the Data tab's Build makes, built here when a test runs alone."""
    from backend.core.workspace import open_workspace
    from backend.dataset.pipeline import prepare_dataset, text_paths
    from backend.dataset.tokenize_text import TextTokenizeConfig

    ws = open_workspace(workspace)
    if not list(ws.dataset.glob("*.parquet")):
        prepare_dataset(ws, TextTokenizeConfig(**text_paths(ws)))


def test_finetune_start_follow_and_abort(studio: Studio, page) -> None:  # type: ignore[no-untyped-def]
    built_dataset(studio.workspace)
    page.goto(studio.url)
    page.get_by_role("tab", name="Fine-tune").click()

    page.locator("#ft-command", has_text="backend.finetune.trainer").wait_for(timeout=3_000)  # filled at once
    page.locator("#ft-init").click()  # the user-stream extension of the demo LM
    page.get_by_text("✔ wrote").wait_for(timeout=120_000)
    # The preset's base_model exists now: the estimate is the tiny model's, without a reload.
    page.wait_for_function(
        "(t => t.includes('GiB') && !t.includes('not a model folder'))(document.querySelector('#ft-budget').innerText)",
        timeout=120_000,
    )
    page.get_by_role("button", name="Optimiser").click()
    lr = page.get_by_label("lr", exact=True)
    lr.fill("-1")
    lr.press("Tab")
    page.locator("#ft-problem", has_text="lr must be > 0").wait_for(timeout=60_000)  # as typed, not at Start
    lr.fill("0.004")
    lr.press("Tab")
    steps = page.get_by_label("max steps")
    steps.fill("5000")  # long enough to abort it mid-way
    steps.press("Tab")
    page.locator("#ft-command", has_text="backend.finetune.trainer").wait_for(timeout=60_000)
    page.wait_for_function("!document.querySelector('#ft-problem').innerText.includes('✘')", timeout=60_000)

    page.locator("#ft-start").click()
    page.locator("#ft-msg", has_text="started").or_(page.locator("#ft-msg", has_text="✘")).wait_for(timeout=60_000)
    assert "started" in page.locator("#ft-msg").inner_text(), page.locator("#ft-msg").inner_text()
    # Live: the progress bar counts steps and the loss curves fill in.
    page.wait_for_function(
        "/step ([3-9]|\\d\\d+) \\//.test(document.querySelector('#ft-progress').innerText)", timeout=240_000
    )
    assert "running" in page.locator("#ft-progress").inner_text()
    page.locator("#ft-curves canvas, #ft-curves svg").first.wait_for(timeout=30_000)
    assert "step" in page.locator("#ft-log").inner_text().lower()

    # Start while busy: refused as a notice that goes away; no run folder, no message left behind.
    runs_before = sorted(p.name for p in (studio.workspace / "runs").iterdir())
    page.locator("#ft-start").click()
    page.locator(".toast-body", has_text="✘").first.wait_for(timeout=30_000)
    assert sorted(p.name for p in (studio.workspace / "runs").iterdir()) == runs_before
    assert page.locator("#ft-msg").inner_text().strip() == ""

    page.locator("#ft-abort").click()
    page.locator("#ft-progress", has_text="aborted").wait_for(timeout=120_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio-finetune.png"), full_page=True)

    # Export the checkpoint the abort wrote, then resume the run and stop it again.
    page.locator("#ft-export").click()
    page.locator("#ft-export-msg", has_text="✔ exported").or_(page.locator("#ft-export-msg", has_text="✘")).wait_for(
        timeout=120_000
    )
    assert "✔ exported" in page.locator("#ft-export-msg").inner_text(), page.locator("#ft-export-msg").inner_text()
    page.locator("#ft-resume").click()
    page.locator("#ft-msg", has_text="resumed").wait_for(timeout=60_000)
    page.locator("#ft-progress", has_text="running").wait_for(timeout=60_000)
    page.locator("#ft-abort").click()
    page.locator("#ft-progress", has_text="aborted").wait_for(timeout=120_000)

    # Save the configuration, load an edited copy, then a preset replaces the form.
    page.locator("#ft-save").click()
    with page.expect_download() as download:
        page.locator("#ft-saved a").first.click()
    saved = json.loads(Path(download.value.path()).read_text())
    assert saved["lr"] == 0.004 and saved["max_steps"] == 5000
    edited = studio.workspace.parent / "edited_config.json"
    edited.write_text(json.dumps({**saved, "max_steps": 77}))
    with page.expect_file_chooser() as chooser:
        page.locator("#ft-load").click()
    chooser.value.set_files(str(edited))
    expect(page.get_by_label("max steps")).to_have_value("77", timeout=60_000)
    page.locator("#ft-preset input").click()
    page.get_by_role("option", name="1 GPU, LoRA (7B)").click()
    expect(page.get_by_label("max steps")).to_have_value("2000", timeout=60_000)
    assert not page.errors, page.errors


def test_preprocess_two_processes_follow_and_reattach(studio: Studio, page) -> None:  # type: ignore[no-untyped-def]
    """tokenize_audio on 2 processes started from the Preprocess tab: the command first, then each rank's
    progress and rank 0's summary; after a reload the run is picked and shown again."""
    page.goto(studio.url)
    page.get_by_role("tab", name="Preprocess").click()
    command = page.locator("#pp-command")
    command.filter(has_text="backend.dataset.preprocess_rank").wait_for(timeout=60_000)
    output = page.get_by_label("output dir")
    output.fill("tokens/two-processes")  # not the Data tab's tokens/audio: every file is written here
    output.press("Tab")
    processes = page.get_by_label("num processes")
    processes.fill("2")
    processes.press("Tab")
    command.filter(has_text="--num_processes 2").wait_for(timeout=60_000)
    assert "ACCELERATE_USE_CPU=true" in command.inner_text() and "--multi_gpu" in command.inner_text()
    page.wait_for_function("!document.querySelector('#pp-problem').innerText.includes('✘')", timeout=60_000)

    page.locator("#pp-start").click()
    page.locator("#pp-msg", has_text="started").or_(page.locator("#pp-msg", has_text="✘")).wait_for(timeout=60_000)
    assert "started" in page.locator("#pp-msg").inner_text(), page.locator("#pp-msg").inner_text()
    page.locator("#pp-progress", has_text="finished").or_(page.locator("#pp-progress", has_text="failed")).wait_for(
        timeout=600_000
    )
    assert "finished" in page.locator("#pp-progress").inner_text(), page.locator("#pp-log").inner_text()
    page.locator("#pp-status", has_text="tokenize_audio, 2 rank(s)").wait_for(timeout=30_000)
    status = page.locator("#pp-status").inner_text()
    assert "rank 0: 100%" in status and "rank 1: 100%" in status, status
    written = len(list((studio.workspace / "tokens" / "two-processes").glob("*.npz")))
    assert written >= 3 and f"{written} written, 0 already done, 0 failed" in status, status
    run_id = page.locator("#pp-run input").input_value()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio-preprocess.png"), full_page=True)

    page.reload()
    page.get_by_role("tab", name="Preprocess").click()
    expect(page.locator("#pp-run input")).to_have_value(run_id, timeout=60_000)
    page.locator("#pp-status", has_text="tokenize_audio, 2 rank(s)").wait_for(timeout=30_000)
    assert "finished" in page.locator("#pp-progress").inner_text()
    assert not page.errors, page.errors


def test_continuations_generate_and_play(studio: Studio, page) -> None:  # type: ignore[no-untyped-def]
    from backend.core.workspace import open_workspace

    ws = open_workspace(studio.workspace)
    built_dataset(ws.root)
    page.goto(studio.url)
    page.get_by_role("tab", name="Continuations").click()
    page.locator("#ct-model-a input").click(timeout=120_000)  # once the tab's models are listed
    page.get_by_role("option", name="models/demo-lm", exact=True).click()  # a dep_q 8 model: user stream forced
    page.locator("#ct-generate").click()
    page.locator("#ct-msg", has_text="continuation(s)").or_(page.locator("#ct-msg", has_text="✘")).wait_for(
        timeout=240_000
    )
    assert "✔" in page.locator("#ct-msg").inner_text(), page.locator("#ct-msg").inner_text()
    for player in ("#ct-ref", "#ct-a"):
        page.locator(f"{player} [data-testid=waveform-controls]").wait_for(timeout=60_000)
    assert "floor_transfer_offset" in page.locator("#ct-stats").inner_text()
    # The spectrograms saved next to the WAVs are shown (and load: the image has pixels).
    page.wait_for_function(
        "[...document.querySelectorAll('#ct-spectrograms img')].some(i => i.naturalWidth >= 1200)", timeout=30_000
    )
    # Prompt (4 s) + continuation (6 s) by default: the player holds 10 s of decoded stereo audio.
    page.locator("#ct-a", has_text="0:10").wait_for(timeout=30_000)
    # Play it: the player's clock moves (the first click can land before the waveform is ready).
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    played = "(document.querySelector('#ct-a').innerText.match(/\\d:\\d\\d/) || ['0:00'])[0] !== '0:00'"
    for _ in range(5):
        page.locator("#ct-a button[aria-label='Play']").click()
        try:
            page.wait_for_function(played, timeout=4_000)
            break
        except PlaywrightTimeout:  # try the click again
            continue
    page.wait_for_function(played, timeout=1_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio-continuations.png"), full_page=True)
    assert not page.errors, page.errors


def test_curate_annotate_edit_undo_save_swap_exclude(studio: Studio, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Audio alone is uploaded, annotated (pocketsphinx, a 3 s clip) and its transcript fixed on the preview."""
    import soundfile

    audio, sr = soundfile.read(str(REPO / "assets" / "demo" / "demo_cafe.flac"))
    soundfile.write(str(tmp_path / "raw_call.wav"), audio[: 3 * sr], sr)
    page.goto(studio.url)
    page.get_by_text("Demo workspace.").wait_for()
    page.locator("#data-upload input[type=file]").set_input_files([str(tmp_path / "raw_call.wav")])
    page.locator("#data-upload-msg", has_text="needs annotation").wait_for(timeout=30_000)
    page.locator("#data-pick input").wait_for()
    assert page.locator("#data-pick input").input_value() == "raw_call (needs annotation)"

    page.locator("#curate").get_by_text("Curate: annotate").click()
    page.locator("#curate-annotate").click()
    msg = page.locator("#curate-msg")
    msg.get_by_text("annotated raw_call").wait_for(timeout=120_000)
    preview = page.locator("#curate-preview")
    words = preview.locator(".word[data-i]")
    words.first.wait_for()
    count = words.count()
    assert count > 0

    def act(op: str, expect: str, **fields: str) -> None:
        for name, value in fields.items():
            preview.locator(f".cur-{name}").fill(value)
        preview.locator(f"button[data-op={op}]").click()
        msg.get_by_text(expect).first.wait_for(timeout=30_000)

    words.first.click()
    act("text", "is now 'edited'", text="edited")
    assert preview.locator(".word[data-selected]").inner_text() == "edited"
    act("times", "(0.50..0.90 s)", start="0.5", end="0.9")

    # Drag the selected word's right edge 40 px to the right: it ends later.
    box = preview.locator(".word[data-selected]").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] + 40, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    end = float(preview.locator(".word[data-selected]").get_attribute("data-end"))  # where the drag left it
    assert end > 1.0
    # The server's answer, not the message of the edit before (also "times: word ..."): an edit sent before it
    # arrives would be typed into the bar that the answer then replaces.
    msg.get_by_text(f"(0.50..{end:.2f} s)").wait_for(timeout=30_000)

    act("insert", "insert: word", text="hey there", start="2.0", end="2.6")
    act("split", "split: word", at="2.3")
    assert preview.locator(".word[data-i]").count() == count + 2
    act("merge", "merge: word")
    act("delete", "deleted a word")
    assert preview.locator(".word[data-i]").count() == count
    page.locator("#curate-undo").click()
    msg.get_by_text("undone").wait_for(timeout=30_000)
    assert preview.locator(".word[data-i]").count() == count + 1

    raw = studio.workspace / "raw"
    first = (raw / "raw_call.json").read_text()
    page.locator("#curate-save").click()
    msg.get_by_text("original stays in raw_call.original.json").wait_for(timeout=30_000)
    assert (raw / "raw_call.original.json").read_text() == first and "hey there" in (raw / "raw_call.json").read_text()

    speakers = [w.get_attribute("data-i") for w in preview.locator(".ms-spk-A .word").all()]
    page.locator("#curate-swap").click()
    msg.get_by_text("swapped the channels").wait_for(timeout=30_000)
    assert len(speakers) == preview.locator(".ms-spk-B .word").count()

    page.locator("#curate-exclude input").check()
    msg.get_by_text("left out of the dataset").wait_for(timeout=30_000)
    assert (raw / "raw_call.exclude").is_file()
    page.locator("#data-pick input").click()
    page.get_by_role("option", name="raw_call (excluded)").wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio-curate.png"), full_page=True)
    assert not page.errors, page.errors


def test_chat_talks_both_ways_and_records(studio: Studio, fake_mic_browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A fake microphone (demo speech) talks to a model through the Chat tab for > 5 s."""
    import numpy as np
    import soundfile as sf
    import soxr
    from chat_helpers import speaking_lm

    from backend.core.workspace import open_workspace
    from backend.data.audio_io import load_stereo
    from backend.demo.workspace import DEMO_VOCAB_SIZE

    ws = open_workspace(studio.workspace)
    speaking_lm(ws.demo_lm, DEMO_VOCAB_SIZE, ws.models / "speaking-lm")  # a random LM that says demo pieces
    audio, rate = load_stereo(REPO / "assets" / "demo" / "demo_cafe.flac")
    mic = tmp_path / "mic.wav"
    sf.write(mic, soxr.resample(audio[1], rate, 48_000), 48_000, subtype="PCM_16")  # speech: tones get suppressed

    page = fake_mic_browser(mic).new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(studio.url)
        page.get_by_role("tab", name="Chat").click()
        page.locator("#chat-model input").click(timeout=60_000)
        page.get_by_role("option", name="models/speaking-lm", exact=True).click()
        page.locator("#chat-load").click()
        page.locator("#chat-status", has_text="Ready").wait_for(timeout=120_000)
        raw_before = set(ws.raw.glob("chat-*.wav"))

        page.locator(".ms-chat-talk").click()
        page.locator('.ms-chat[data-state="live"]').wait_for(timeout=30_000)
        gauge = "Number(document.querySelector('[data-gauge=\"{}\"]').textContent)"
        page.wait_for_function(f"{gauge.format('received_s')} >= 5 && {gauge.format('sent_s')} >= 5", timeout=60_000)
        assert page.locator(".ms-chat-transcript").inner_text().strip()
        assert float(page.locator('[data-gauge="compute_ms"]').inner_text()) > 0
        assert page.locator('[data-gauge="rtf"]').inner_text() != "–"
        page.locator(".ms-chat-stop").click()
        page.locator('.ms-chat[data-state="closed"]').wait_for(timeout=10_000)
        processed = int(page.locator('[data-gauge="frames"]').inner_text())
        page.locator("#chat-recording-info", has_text="Saved").wait_for(timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "studio-chat.png"), full_page=True)
        (wav,) = set(ws.raw.glob("chat-*.wav")) - raw_before
        page.get_by_role("tab", name="Data").click()  # the recording is a dialogue of the workspace now
        page.locator("#data-pick input").click(timeout=30_000)
        page.get_by_role("option", name=f"{wav.stem} (chat recording)", exact=True).click()
        page.locator("#data-report", has_text=wav.stem).wait_for(timeout=30_000)
        assert not errors, errors
    finally:
        page.close()

    recorded, sr = sf.read(wav)
    # The recording is what the model processed (frames it skipped to keep up are not in it).
    assert recorded.shape[1] == 2 and abs(len(recorded) / 1920 - processed) <= 2, (recorded.shape, processed)
    frames = recorded.reshape(-1, 1920, 2)
    assert np.mean(np.abs(frames[:, :, 1]).max(axis=1) > 0.01) > 0.3  # the user's speech, most of the time
    assert np.mean(np.abs(frames[:, :, 0]).max(axis=1) > 0.001) > 0.5  # Moshi's voice
    assert wav.with_suffix(".json").is_file()


def test_evaluate_start_follow_reattach_table_and_figures(studio: Studio, page) -> None:  # type: ignore[no-untyped-def]
    """An evaluation of the demo model started from the Evaluate tab, with the demo dataset as its evaluation split:
    the page is reloaded while it streams and the tab picks it again and follows it to its end; then the table (the
    probes' rows, the loss and the continuations' turn-taking beside the dialogues') and the TOR/latency figure."""
    from backend.core.paths import PROBE_SETS

    built_dataset(studio.workspace)
    probes = studio.workspace / "probes-two"  # two short probes: the tab's probe-set field takes a folder
    for task in ("smooth_turn_taking", "pause_handling"):
        if not (probes / task).exists():
            shutil.copytree(PROBE_SETS / "studio-en" / task / "1", probes / task / "1")
    page.goto(studio.url)
    page.get_by_role("tab", name="Evaluate").click()
    page.locator("#ev-models input").click(timeout=60_000)
    page.get_by_role("option", name="models/demo-lm", exact=True).click()
    page.keyboard.press("Escape")
    default = page.locator("#ev-probes .token", has_text="studio-en")  # the default set: too long for a test
    default.locator(".token-remove").click()
    page.locator("#ev-probes input").fill("probes-two")
    page.locator("#ev-probes input").press("Enter")
    page.keyboard.press("Escape")
    page.locator("#ev-device").get_by_label("cpu").check()
    page.locator("#ev-data textarea").fill("dataset")
    page.locator("#ev-start").click()
    page.locator("#ev-msg", has_text="started").wait_for(timeout=60_000)
    run_id = page.locator("#ev-run input").input_value()
    page.locator("#ev-progress", has_text="running").wait_for(timeout=30_000)

    page.reload()  # reattach: the running evaluation is picked again and followed
    page.get_by_role("tab", name="Evaluate").click()
    expect(page.locator("#ev-run input")).to_have_value(run_id, timeout=60_000)
    page.locator("#ev-progress", has_text="running").wait_for(timeout=30_000)
    page.locator("#ev-progress", has_text="finished").or_(page.locator("#ev-progress", has_text="failed")).wait_for(
        timeout=600_000
    )
    assert "finished" in page.locator("#ev-progress").inner_text(), page.locator("#ev-log").inner_text()
    shown = page.locator("#ev-table")
    for row in (
        "smooth turn-taking: TOR",
        "pause handling: TOR",
        "demo-lm",  # both tasks, the model's column
        "eval loss: text_nonpad",
        "continuations: gaps per minute (reference",
    ):
        expect(shown).to_contain_text(row, timeout=30_000)
    page.wait_for_function("(document.querySelector('#ev-tor img') || {}).naturalWidth > 500", timeout=30_000)
    assert (studio.workspace / "evaluations" / run_id / "tor_latency.png").is_file()
    assert (
        "2 probe(s) streamed" in page.locator("#ev-log").inner_text()
        or "results:" in page.locator("#ev-log").inner_text()
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio-evaluate.png"), full_page=True)
    assert not page.errors, page.errors
