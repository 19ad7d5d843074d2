"""The studio as a hostile client sees it, over HTTP against `launch.py`: client-sent file paths, upload size,
and (on a non-loopback bind) authentication of pages, API, file routes and the /api/chat websocket, over TLS."""

import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import httpx
import pytest
from conftest import REPO, free_port, stop_process

SECRET = "do-not-leak-7f3a9c"


class Studio(NamedTuple):
    url: str
    workspace: Path
    upload_dir: Path  # GRADIO_TEMP_DIR of the server: Gradio's upload cache
    log: Path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from backend.demo.workspace import create_demo_workspace

    return create_demo_workspace(tmp_path_factory.mktemp("sec") / "workspace").root


def start_studio(workspace: Path, run_dir: Path, args: list[str], env: dict[str, str] | None = None,
                 scheme: str = "http") -> tuple[subprocess.Popen, Studio]:
    """`python launch.py ARGS` with its own Gradio upload folder; returns once it answers HTTP."""
    port = free_port()
    upload_dir = run_dir / "gradio"
    log = run_dir / "studio.log"
    proc = subprocess.Popen([sys.executable, "launch.py", "--workspace", str(workspace), "--port", str(port), *args],
                            cwd=REPO, env={**os.environ, "GRADIO_TEMP_DIR": str(upload_dir), **(env or {})},
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            httpx.get(url, verify=False, timeout=2)
            return proc, Studio(url, workspace, upload_dir, log)
        except httpx.HTTPError:
            if proc.poll() is not None or time.time() > deadline:
                stop_process(proc)
                raise RuntimeError(f"studio did not start: {log.read_text()}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def studio(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A local studio (no auth needed on 127.0.0.1) with a 1 MB upload limit."""
    proc, s = start_studio(workspace, tmp_path_factory.mktemp("local"), ["--max-upload-mb", "1"])
    yield s
    stop_process(proc)


def call(studio: Studio, endpoint: str, data: list[Any], http: Any = httpx) -> tuple[str, Any]:
    """An event through Gradio's HTTP API as a script would call it (`http`: httpx or an httpx.Client): POST,
    then read the event stream. Returns the last (event, data) of the stream."""
    r = http.post(f"{studio.url}/gradio_api/call/{endpoint}", json={"data": data}, timeout=30)
    r.raise_for_status()
    event_id = r.json()["event_id"]
    event, payload = "", None
    with http.stream("GET", f"{studio.url}/gradio_api/call/{endpoint}/{event_id}", timeout=60) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = json.loads(line.split(":", 1)[1])
    return event, payload


def file_endpoints(studio: Studio) -> list[str]:
    """Every API endpoint that takes a file from the client (found, not listed by hand)."""
    info = httpx.get(f"{studio.url}/gradio_api/info", timeout=30).json()["named_endpoints"]
    return [name.lstrip("/") for name, ep in info.items()
            if any("filepath" in p["python_type"]["type"] for p in ep["parameters"])]


def file_payload(path: Path, many: bool) -> dict | list:
    one = {"path": str(path), "meta": {"_type": "gradio.FileData"}}
    return [one] if many else one


def cached_copies(upload_dir: Path) -> list[Path]:
    return [p for p in upload_dir.rglob("*") if p.is_file() and SECRET in p.read_bytes().decode(errors="ignore")]


# ---------------------------------------------------------------- 1: client-sent paths

def test_a_server_file_cannot_be_read_through_any_file_endpoint(studio: Studio, tmp_path: Path) -> None:
    """The probe of issue 11: a FileData naming a server file, sent to each endpoint that takes files."""
    endpoints = file_endpoints(studio)
    assert {"upload_dialogues", "load_config"} <= set(endpoints)  # the Data tab's upload, Fine-tune's "Load configuration"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"lr": 0.5, "note": SECRET}))
    info = httpx.get(f"{studio.url}/gradio_api/info", timeout=30).json()["named_endpoints"]
    for name in endpoints:
        many = info[f"/{name}"]["parameters"][0]["python_type"]["type"].startswith("list")
        event, payload = call(studio, name, [file_payload(secret, many)])
        assert event == "error", (name, payload)
        assert SECRET not in json.dumps(payload)
    assert cached_copies(studio.upload_dir) == []  # nothing was copied into Gradio's cache to be served


# ---------------------------------------------------------------- 4: upload size and the temp folder

def upload(studio: Studio, *paths: Path, **kw: Any) -> httpx.Response:
    """Gradio's upload route, as the browser's file widget uses it."""
    files = [("files", (p.name, p.read_bytes())) for p in paths]
    return httpx.post(f"{studio.url}/gradio_api/upload", files=files, timeout=60, **kw)


def cache_files(studio: Studio) -> list[Path]:
    return [p for p in studio.upload_dir.rglob("*") if p.is_file()] if studio.upload_dir.exists() else []


def test_an_upload_over_the_limit_is_refused_with_a_message_and_leaves_nothing(studio: Studio, tmp_path: Path) -> None:
    big = tmp_path / "big.wav"
    big.write_bytes(os.urandom(2 * 2**20))  # the studio was started with --max-upload-mb 1
    before = set(cache_files(studio))
    r = upload(studio, big)
    assert r.status_code == 413 and f"maximum allowed size of {2**20} bytes" in r.text
    assert set(cache_files(studio)) == before


def test_imported_uploads_leave_the_temp_folder(studio: Studio, tmp_path: Path) -> None:
    """A good dialogue pair and a configuration file go through the browser's path (upload, then the
    event); they work with Gradio's path check restored, and no copy stays in its upload cache."""
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "sec_pair.wav", 0.1 * np.random.default_rng(0).standard_normal((16000, 2)), 16000)
    (tmp_path / "sec_pair.json").write_text(json.dumps([{"speaker": "A", "word": "hello", "start": 0.1, "end": 0.5}]))
    r = upload(studio, tmp_path / "sec_pair.wav", tmp_path / "sec_pair.json")
    assert r.status_code == 200, r.text
    uploaded = r.json()
    assert all(Path(p).is_file() for p in uploaded)
    event, payload = call(studio, "upload_dialogues", [[file_payload(Path(p), False) for p in uploaded]])
    assert event == "complete" and "Imported **sec_pair**" in payload[0], payload
    assert (studio.workspace / "raw" / "sec_pair.wav").is_file()
    assert not any(Path(p).exists() for p in uploaded)

    (tmp_path / "run.json").write_text(json.dumps({"lr": 0.000123}))
    (path,) = upload(studio, tmp_path / "run.json").json()
    event, payload = call(studio, "load_config", [file_payload(Path(path), False)])
    assert event == "complete" and 0.000123 in payload, payload
    assert not Path(path).exists()


# ---------------------------------------------------------------- 3: remote use

USER, PASSWORD = "ada", "s3cret:with:colons"


def test_a_public_bind_without_accounts_is_refused_before_anything_is_created(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "launch.py", "--host", "0.0.0.0", "--workspace", str(tmp_path / "ws")],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "MOSHI_STUDIO_AUTH"})
    assert out.returncode == 2 and "--host 0.0.0.0" in out.stderr and "--auth-file" in out.stderr, out.stderr
    assert not (tmp_path / "ws").exists()
    (tmp_path / "users").write_text("no password here\n")
    out = subprocess.run([sys.executable, "launch.py", "--host", "0.0.0.0", "--auth-file", str(tmp_path / "users")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and f"{tmp_path / 'users'} line 1: expected user:password" in out.stderr


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def remote(workspace: Path, tls: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """The studio as reached from another machine: bound to 0.0.0.0, accounts from a file, https."""
    d = tmp_path_factory.mktemp("remote")
    (d / "users").write_text(f"# studio accounts\n{USER}:{PASSWORD}\n\nbob:other\n")
    cert, key = tls
    proc, s = start_studio(workspace, d, ["--host", "0.0.0.0", "--auth-file", str(d / "users"), "--ssl-certfile",
                                          str(cert), "--ssl-keyfile", str(key)], scheme="https")
    yield s
    stop_process(proc)


def client(tls: tuple[Path, Path], **kw: Any) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(tls[0])), timeout=30, **kw)


def chat_handshake(studio: Studio, tls: tuple[Path, Path], headers: dict[str, str]) -> bytes:
    """The first message of /api/chat (b"\\x00" once the model is ready)."""
    from websockets.sync.client import connect

    url = studio.url.replace("https", "wss") + "/api/chat"
    with connect(url, additional_headers=headers, ssl=ssl.create_default_context(cafile=str(tls[0])),
                 open_timeout=30, origin=None) as ws:
        return ws.recv(timeout=180)


def chat_refusal(studio: Studio, tls: tuple[Path, Path], headers: dict[str, str]) -> int:
    """The HTTP status a websocket handshake on /api/chat gets, as a browser sends it. (websockets' own client
    can wait forever for a TLS server to close after a refused handshake: it joins its reader thread.)"""
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    with client(tls) as c:
        return c.get(studio.url + "/api/chat", headers={**upgrade, **headers}).status_code


def test_remote_studio_needs_a_login_for_pages_api_files_and_websocket(remote: Studio, tls: tuple[Path, Path]) -> None:
    wav = remote.workspace / "raw" / "demo_cafe.flac"
    paths = ["/", "/gradio_api/info", "/gradio_api/config", f"/gradio_api/file={wav}", "/docs"]
    with client(tls) as anonymous:
        for path in paths:
            r = anonymous.get(remote.url + path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), path
        assert anonymous.post(remote.url + "/gradio_api/call/list_dialogues", json={"data": [None]}).status_code == 401
        assert anonymous.get(remote.url + "/", auth=(USER, "wrong")).status_code == 401
        assert anonymous.get(remote.url + "/", auth=("eve", PASSWORD)).status_code == 401
    host = remote.url.split("//")[1]
    assert chat_refusal(remote, tls, {"Origin": f"https://{host}"}) == 403

    with client(tls) as browser:
        page = browser.get(remote.url + "/", auth=(USER, PASSWORD))
        assert page.status_code == 200 and "Moshi Studio" in page.text
        cookie = browser.cookies.get("moshi_studio_session")
        assert cookie and "httponly" in page.headers["set-cookie"].lower() and "secure" in page.headers["set-cookie"].lower()
        # after the login, the page's own requests carry the session cookie only
        assert browser.get(remote.url + "/gradio_api/info").status_code == 200
        assert browser.get(remote.url + f"/gradio_api/file={wav}").content == wav.read_bytes()
        event, payload = call(remote, "list_dialogues", [None], http=browser)
        assert event == "complete" and "demo_cafe" in json.dumps(payload)
    session = {"Cookie": f"moshi_studio_session={cookie}"}
    assert chat_refusal(remote, tls, {**session, "Origin": "https://evil.example"}) == 403  # another site's page
    assert chat_handshake(remote, tls, {**session, "Origin": f"https://{host}"}) == b"\x00"


def test_remote_studio_speaks_only_tls(remote: Studio, tls: tuple[Path, Path]) -> None:
    with client(tls) as c:  # verified against the certificate given to --ssl-certfile
        assert c.get(remote.url + "/", auth=(USER, PASSWORD)).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(remote.url.replace("https", "http") + "/", auth=(USER, PASSWORD), timeout=10)
