"""`launch.py --workspace NEW` without --start (issue 24, 3): the page asks "Start empty" or "Start with the demo",
the choice makes the workspace as `moshi-studio workspace init` / `init-demo` do, and the studio replaces the page
on the same address, in a real browser."""

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, free_port, stop_process

from backend.core.errors import ConfigError
from backend.core.workspace import open_workspace


def test_the_first_choice_makes_the_workspace_once(tmp_path: Path) -> None:
    from studio.start_page import StartChoice, on_choose, question

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    choice = StartChoice(tmp_path / "mine", "en")
    assert "not a workspace yet" in question(choice) and "1 file(s) or folder(s) already; they are kept" in question(
        choice
    )
    with pytest.raises(ConfigError, match="'nothing' is not one of empty, demo"):
        choice.choose("nothing")  # what no button sends: refused before anything is made
    assert not choice.chosen.is_set() and not (tmp_path / "mine" / "settings.json").exists()
    assert on_choose(choice, "empty").startswith(f"✔ `{tmp_path / 'mine'}` is a workspace (empty)")
    assert choice.chosen.is_set()
    ws = open_workspace(tmp_path / "mine")
    assert not ws.settings.demo and not list(ws.raw.iterdir()) and (ws.root / "notes.txt").read_text() == "mine"
    assert choice.choose("demo").root == ws.root and not list(ws.raw.iterdir())  # a second click changes nothing


def test_the_start_page_is_behind_the_gate_and_a_file_is_refused(tmp_path: Path) -> None:
    """Off loopback the start page needs an account and answers only the names it is bound to, as the studio; no
    request makes the workspace but a choice. A --workspace that is a file is refused before anything serves."""
    (tmp_path / "users").write_text("ada:s3cret\n")
    proc, url = launch(
        tmp_path / "mine", tmp_path / "studio.log", "--host", "0.0.0.0", "--auth-file", str(tmp_path / "users")
    )
    try:
        assert httpx.get(f"{url}/start-page", timeout=10).status_code == 401
        assert httpx.get(f"{url}/start-page", headers={"Host": "evil.example"}, timeout=10).status_code == 421
        answer = httpx.get(f"{url}/start-page", auth=("ada", "s3cret"), timeout=10)
        assert answer.status_code == 200 and answer.json() == {"asking": True}
        assert "Start with the demo" in httpx.get(f"{url}/config", auth=("ada", "s3cret"), timeout=10).text
        assert not (tmp_path / "mine").exists()
    finally:
        stop_process(proc)
    (tmp_path / "file").write_text("")
    out = subprocess.run(
        [sys.executable, "launch.py", "--workspace", str(tmp_path / "file")], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 2 and out.stderr.startswith("error: --workspace") and "is a file" in out.stderr, out.stderr


def launch(workspace: Path | None, log: Path, *args: str, cwd: Path = REPO) -> tuple[subprocess.Popen, str]:
    """`python launch.py --workspace NEW` (None: no --workspace, as `make studio` runs it in `cwd`) as a user starts
    it; returns once the address answers."""
    port = free_port()
    chosen = ["--workspace", str(workspace)] if workspace is not None else []
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *chosen, "--port", str(port), *args],
        cwd=cwd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            httpx.get(url, timeout=2)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None or time.time() > deadline:
                stop_process(proc)
                raise RuntimeError(f"launch.py did not answer: {log.read_text()}")
            time.sleep(0.5)


@pytest.mark.browser
@pytest.mark.parametrize("button", ["Start empty", "Start with the demo"])
def test_a_new_workspace_asks_in_the_page(button: str, browser: Any, tmp_path: Path) -> None:
    workspace = tmp_path / "mine"
    proc, url = launch(workspace, tmp_path / "studio.log")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url)
        page.locator("#start-question", has_text="not a workspace yet").wait_for(timeout=60_000)
        assert not workspace.exists() and not page.get_by_role("tab", name="Fine-tune").count()
        page.get_by_role("button", name=button, exact=True).click()
        # The page reloads by itself into the studio, served by a new server on the same address.
        page.get_by_role("tab", name="Fine-tune").wait_for(timeout=120_000)
        ws = open_workspace(workspace)
        dialogues = sorted(p.name for p in ws.raw.glob("*.flac"))
        banner = page.locator("#demo-banner")
        if button == "Start empty":
            assert not ws.settings.demo and dialogues == [] and not ws.demo_lm.exists()
            assert "Demo workspace" not in banner.inner_text()
        else:
            assert ws.settings.demo and "demo_cafe.flac" in dialogues and ws.demo_lm.is_dir()
            banner.get_by_text("Demo workspace").wait_for(timeout=10_000)
            page.locator("#data-pick input").click()  # the Data tab lists the demo's dialogues
            page.get_by_role("option", name="demo_cafe", exact=True).wait_for(timeout=30_000)
        assert httpx.get(f"{url}/start-page", timeout=10).status_code == 404  # the start page's server is gone
        assert not errors, errors
        log = (tmp_path / "studio.log").read_text()
        assert "the page asks how it starts" in log and f"(workspace: {ws.root})" in log, log
    finally:
        page.close()
        stop_process(proc)


def test_the_readme_command_opens_on_the_demo_without_asking(tmp_path: Path) -> None:
    """`make studio` on a fresh clone (no --workspace: ./workspace) is the README's demo command: no question."""
    proc, url = launch(None, tmp_path / "studio.log", cwd=tmp_path)
    try:
        assert httpx.get(f"{url}/start-page", timeout=10).status_code == 404
        ws = open_workspace(tmp_path / "workspace")
        assert ws.settings.demo and (ws.raw / "demo_cafe.flac").is_file()
        log = (tmp_path / "studio.log").read_text()
        assert "asks" not in log and f"(workspace: {ws.root})" in log, log
    finally:
        stop_process(proc)
