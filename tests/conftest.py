"""Shared fixtures: the SpokenWOZ sample (skipped when absent), tiny models, a demo workspace."""

import os
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

REPO = Path(__file__).resolve().parents[1]
SPOKENWOZ = REPO.parent / "shared" / "data" / "spokenwoz_sample"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
]

# Two cores: keep torch from oversubscribing when pytest and a studio subprocess both run.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# moshi compiles its LM lazily on first use (~30 s on this CPU); it reads this at import time.
os.environ.setdefault("NO_TORCH_COMPILE", "1")


@pytest.fixture(scope="session")
def spokenwoz() -> Path:
    if not (SPOKENWOZ / "audio").is_dir():
        pytest.skip(f"SpokenWOZ sample not found at {SPOKENWOZ} (it lives in ../shared/data, outside the repo)")
    return SPOKENWOZ


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory):
    """A fresh demo workspace, built once per test session through the launcher's own code path."""
    from backend.demo.workspace import create_demo_workspace

    return create_demo_workspace(tmp_path_factory.mktemp("ws") / "workspace")


def stop_process(proc: "subprocess.Popen") -> None:
    """SIGTERM, then SIGKILL if it is still there after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    """Debian's headless chromium through Playwright (never Playwright's own browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def fake_mic_browser(browser: "Browser") -> Iterator[Callable[[Path], "Browser"]]:
    """A factory `launch(wav_path) -> Browser`: chromium whose microphone plays that WAV (16-bit PCM)
    in a loop, with permission prompts auto-accepted. The fake-media flags are per process, so each
    WAV gets its own browser (reused within the session, closed at its end); it is started through
    the `browser` fixture's Playwright, as a second sync Playwright cannot run in the same thread."""
    launched: dict[Path, "Browser"] = {}

    def launch(wav_path: Path) -> "Browser":
        wav = Path(wav_path).resolve()
        if not wav.is_file():
            raise FileNotFoundError(f"{wav}: fake microphone WAV not found")
        if wav not in launched:
            launched[wav] = browser.browser_type.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    *CHROMIUM_ARGS,
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-audio-capture={wav}",
                ],
            )
        return launched[wav]

    yield launch
    for b in launched.values():
        b.close()
