"""The Japanese demo in a real browser: `launch.py --demo-language ja` builds it, the Data preview reads Japanese
words, Build joins them without spaces, the Timeline shows a byte-fallback run as the character it forms, and
Settings inspects the tokenizer."""

import subprocess
import sys
import time
import urllib.request
from typing import Iterator

import pytest
from conftest import ARTIFACTS, REPO, free_port, stop_process

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workspace = tmp_path_factory.mktemp("studio_ja") / "workspace"
    port = free_port()
    log_path = workspace.parent / "studio.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "launch.py",
                "--workspace",
                str(workspace),
                "--port",
                str(port),
                "--demo-language",
                "ja",
                "--start",
                "demo",
            ],
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
                        raise RuntimeError(f"studio did not start: {log_path.read_text()}")
                    time.sleep(0.5)
            yield url
        finally:
            stop_process(proc)


def test_japanese_demo_preview_build_timeline_and_tokenizer(studio: str, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(studio)
        words = page.locator("#data-preview .word")
        words.first.wait_for(timeout=60_000)
        page.locator("#data-preview .word", has_text="ｺｰﾋｰを").wait_for(timeout=30_000)  # ja_cafe, as written
        texts = words.all_inner_texts()
        assert "いらっしゃいませ。" in texts and "ＯＫです。" in texts
        assert not page.get_by_label("whitespace").is_checked()  # the workspace's default: J-Moshi's no-whitespace

        page.locator("#data-build").click()
        report = page.locator("#data-build-msg", has_text="3 dialogues")
        report.wait_for(timeout=180_000)
        text = report.inner_text()
        assert "𠮷 as UTF-8 byte pieces" in text and "0% are a lone word-start mark" in text

        page.get_by_role("tab", name="Timeline").click()
        page.get_by_role("button", name="↻ Refresh rows").click()
        page.locator("#tl-pick input").click()
        page.get_by_role("option", name="train/ja_meeting").click()
        grid = page.locator("#tl-grid .ms-tl", has_text="train/ja_meeting")
        grid.wait_for(timeout=30_000)
        run = page.locator("#tl-grid tr.ms-text").first.locator(".ms-byte")
        assert run.count() == 4  # 𠮷's four bytes, each under the character
        assert run.locator(".ms-char").all_inner_texts() == ["𠮷"] * 4
        assert "<0xF0>" in run.first.inner_text()
        assert page.locator("#tl-grid tr.ms-text").first.locator(".ms-piece", has_text="田").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#tl-grid").screenshot(path=str(ARTIFACTS / "studio-timeline-ja.png"))

        page.get_by_role("tab", name="Settings").click()
        page.locator("#settings-inspect").click()
        inspected = page.locator("#settings-tokenizer", has_text="fingerprint")
        inspected.wait_for(timeout=30_000)
        assert "byte fallback on" in inspected.inner_text() and "bare ▁ 0.0%" in inspected.inner_text()
        assert not errors, errors
    finally:
        page.close()
