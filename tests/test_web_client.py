"""Issue 26: Kyutai's web client and the studio's servers. A page of another origin is refused unless the user
allows it (--allowed-origins), and the refusal names the origin and the setting; `chat-server --static DIR` serves
a built client at its root and nothing outside DIR; `launch.py --preload-chat` loads the chat model at start; and
in chromium, a page served from another origin opens /api/chat exactly as Kyutai's client does."""

import base64
import http.client
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from chat_helpers import standalone_server
from conftest import REPO, free_port, stop_process

# The query string Kyutai's client builds (buildURL in client/src/pages/Conversation/Conversation.tsx: its default
# settings, and a text and an audio seed drawn per conversation).
KYUTAI_PAGE = """<!doctype html><html><body><script>
const workerAddr = "WORKER_ADDR";  // its ?worker_addr=
const params = {text_temperature: 0.7, text_topk: 25, audio_temperature: 0.8, audio_topk: 250, pad_mult: 0,
                text_seed: Math.round(1000000 * Math.random()), audio_seed: Math.round(1000000 * Math.random()),
                repetition_penalty_context: 64, repetition_penalty: 1.0};
const url = new URL(`${window.location.protocol === 'https:' ? 'wss' : 'ws'}://${workerAddr}/api/chat`);
for (const [k, v] of Object.entries(params)) url.searchParams.append(k, v.toString());
window.result = new Promise((resolve) => {
  const ws = new WebSocket(url.toString());
  ws.binaryType = "arraybuffer";
  ws.onmessage = (e) => { resolve({first: new Uint8Array(e.data)[0], text: new TextDecoder().decode(e.data)});
                          ws.close(); };
  ws.onclose = (e) => resolve({closed: e.code});
});
</script></body></html>"""


def handshake(port: int, origin: str, **headers: str) -> httpx.Response:
    """A websocket handshake on /api/chat as a browser page of `origin` sends it (a refusal's body read)."""
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Origin": origin,
        **headers,
    }
    with (
        httpx.Client(timeout=30) as http,
        http.stream("GET", f"http://127.0.0.1:{port}/api/chat", headers=upgrade) as r,
    ):
        if r.status_code != 101:
            r.read()
        return r


def test_a_refused_origin_is_named_with_the_setting_in_the_answer_and_the_log(demo_workspace: Any) -> None:
    port = free_port()
    with standalone_server(demo_workspace, demo_workspace.demo_lm, port) as proc:
        r = handshake(port, "http://localhost:5173")
    log = proc.stdout.read()
    assert r.status_code == 403
    assert "'http://localhost:5173'" in r.text and "--allowed-origins http://localhost:5173" in r.text, r.text
    assert "--allowed-origins http://localhost:5173" in log, log


def test_the_reverse_proxy_settings_of_the_readme_pass_the_origin_check(demo_workspace: Any) -> None:
    """Behind a proxy on https://studio.example.org:8443 that forwards the browser's Host (nginx: `proxy_set_header
    Host $http_host`), the page's websocket is accepted; nginx's `$host` (no port) or no Host header set (the
    upstream's address) is refused."""
    port = free_port()
    origin = "https://studio.example.org:8443"
    with standalone_server(demo_workspace, demo_workspace.demo_lm, port, "--allowed-hosts", "studio.example.org"):
        assert handshake(port, origin, Host="studio.example.org:8443").status_code == 101
        assert handshake(port, origin, Host="studio.example.org").status_code == 403
        assert handshake(port, origin, Host=f"127.0.0.1:{port}").status_code == 403


# ---------------------------------------------------------------- chat-server --static


@pytest.fixture
def client_dist(tmp_path: Path) -> Path:
    """A folder laid out as Kyutai's built client (index.html, assets/), a secret beside it, a symlink out."""
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text('<html><script type="module" src="/assets/index-1a2b.js"></script></html>')
    (dist / "assets" / "index-1a2b.js").write_text("console.log('moshi client')")
    (tmp_path / "secret.txt").write_text("do-not-serve")
    (dist / "assets" / "link.txt").symlink_to(tmp_path / "secret.txt")
    return dist


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET `path` sent exactly as written (httpx would resolve the dot segments before sending)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_chat_server_serves_a_built_client_at_its_root_and_nothing_outside(
    demo_workspace: Any, client_dist: Path
) -> None:
    port = free_port()
    with standalone_server(demo_workspace, demo_workspace.demo_lm, port, "--static", str(client_dist)):
        status, body = raw_get(port, "/")
        assert status == 200 and b"/assets/index-1a2b.js" in body
        assert raw_get(port, "/?worker_addr=127.0.0.1:8998")[0] == 200  # how its README points it at a server
        assert raw_get(port, "/assets/index-1a2b.js") == (200, b"console.log('moshi client')")
        outside = [
            "/../secret.txt",
            "/assets/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/..%2fsecret.txt",
            "/assets/%2e%2e/%2e%2e/secret.txt",
            "/assets/link.txt",
            "//" + str(client_dist.parent / "secret.txt"),
        ]
        for path in outside:
            status, body = raw_get(port, path)
            assert status == 404 and b"do-not-serve" not in body, (path, status, body[:100])
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{port}/api/chat", origin=f"http://127.0.0.1:{port}", open_timeout=30) as ws:
            assert ws.recv(timeout=60) == b"\x00"  # the page's own origin: its websocket is served


def test_chat_server_refuses_a_static_folder_that_is_not_a_built_client(demo_workspace: Any, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "backend.inference.chat_server",
            "--model",
            str(demo_workspace.demo_lm),
            "--mimi",
            str(demo_workspace.demo_mimi),
            "--tokenizer",
            str(demo_workspace.demo_tokenizer),
            "--device",
            "cpu",
            "--static",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and f"{tmp_path}: not a built web client" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- launch.py --preload-chat


def start_studio(workspace: Path, log: Path, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--workspace", str(workspace), "--port", str(port), *args],
        cwd=REPO,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 240
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            return proc, port
        except httpx.HTTPError:
            if proc.poll() is not None or time.time() > deadline:
                stop_process(proc)
                raise RuntimeError(f"studio did not start: {log.read_text()}")
            time.sleep(0.5)


@pytest.mark.slow
def test_studio_loads_the_chat_model_at_start_with_preload_chat(demo_workspace: Any, tmp_path: Path) -> None:
    for flag, loaded in [("--no-preload-chat", False), ("--preload-chat", True)]:
        log = tmp_path / f"{flag}.log"
        proc, _ = start_studio(demo_workspace.root, log, flag)
        stop_process(proc)
        assert ("chat model ready: " + str(demo_workspace.demo_lm) in log.read_text()) == loaded, log.read_text()


# ---------------------------------------------------------------- chromium: a page of another origin


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[int]:
    """A static server on a port of its own: the origin Kyutai's client is served from (its dev server)."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def kyutai_handshake(browser: Any, page_dir: Path, page_port: int, chat_port: int) -> dict[str, Any]:
    (page_dir / "index.html").write_text(KYUTAI_PAGE.replace("WORKER_ADDR", f"127.0.0.1:{chat_port}"))
    page = browser.new_page()
    try:
        page.goto(f"http://localhost:{page_port}/index.html")
        return page.evaluate("window.result")
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.slow
def test_a_page_of_another_origin_talks_to_chat_server_only_when_allowed(
    demo_workspace: Any, browser: Any, page_server: int, tmp_path: Path
) -> None:
    origin = f"http://localhost:{page_server}"
    port = free_port()
    with standalone_server(demo_workspace, demo_workspace.demo_lm, port) as proc:
        refused = kyutai_handshake(browser, tmp_path, page_server, port)
    assert refused == {"closed": 1006}, refused  # what the browser shows the page of a refused handshake
    assert f"--allowed-origins {origin}" in proc.stdout.read()
    port = free_port()
    with standalone_server(demo_workspace, demo_workspace.demo_lm, port, "--allowed-origins", origin):
        accepted = kyutai_handshake(browser, tmp_path, page_server, port)
    assert accepted.get("first") == 0, accepted  # the handshake: every query parameter of the client is served


@pytest.mark.browser
@pytest.mark.slow
def test_a_page_of_another_origin_talks_to_the_studio_only_when_allowed(
    demo_workspace: Any, browser: Any, page_server: int, tmp_path: Path
) -> None:
    origin = f"http://localhost:{page_server}"
    results = {}
    for allowed in [(), ("--allowed-origins", origin, "--preload-chat")]:
        log = tmp_path / f"studio{len(allowed)}.log"
        proc, port = start_studio(demo_workspace.root, log, *allowed)
        try:
            results[bool(allowed)] = kyutai_handshake(browser, tmp_path, page_server, port), log.read_text()
        finally:
            stop_process(proc)
    (refused, refused_log), (accepted, accepted_log) = results[False], results[True]
    assert refused == {"closed": 1006} and f"--allowed-origins {origin}" in refused_log, (refused, refused_log)
    assert accepted.get("first") == 0, (accepted, accepted_log)
