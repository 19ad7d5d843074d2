"""The studio and the standalone chat server as a hostile client sees them, over HTTP against `launch.py` and
`chat-server`: client-sent file paths, upload size, Host (DNS rebinding) and websocket Origin checks, TLS files
that cannot serve, and (on a non-loopback bind) authentication of pages, API, file routes and the /api/chat
websocket, over TLS."""

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


def start_studio(
    workspace: Path, run_dir: Path, args: list[str], env: dict[str, str] | None = None, scheme: str = "http"
) -> tuple[subprocess.Popen, Studio]:
    """`python launch.py ARGS` with its own Gradio upload folder; returns once it answers HTTP."""
    port = free_port()
    upload_dir = run_dir / "gradio"
    log = run_dir / "studio.log"
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--workspace", str(workspace), "--port", str(port), *args],
        cwd=REPO,
        env={**os.environ, "GRADIO_TEMP_DIR": str(upload_dir), **(env or {})},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
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
    return [
        name.lstrip("/")
        for name, ep in info.items()
        if any("filepath" in p["python_type"]["type"] for p in ep["parameters"])
    ]


def file_payload(path: Path, many: bool) -> dict | list:
    one = {"path": str(path), "meta": {"_type": "gradio.FileData"}}
    return [one] if many else one


def cached_copies(upload_dir: Path) -> list[Path]:
    return [p for p in upload_dir.rglob("*") if p.is_file() and SECRET in p.read_bytes().decode(errors="ignore")]


# ---------------------------------------------------------------- 1: client-sent paths


def test_a_server_file_cannot_be_read_through_any_file_endpoint(studio: Studio, tmp_path: Path) -> None:
    """The probe of issue 11: a FileData naming a server file, sent to each endpoint that takes files."""
    endpoints = file_endpoints(studio)
    assert {"upload_dialogues", "load_config"} <= set(
        endpoints
    )  # the Data tab's upload, Fine-tune's "Load configuration"
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
    out = subprocess.run(
        [sys.executable, "launch.py", "--host", "0.0.0.0", "--workspace", str(tmp_path / "ws")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "MOSHI_STUDIO_AUTH"},
    )
    assert out.returncode == 2 and "--host 0.0.0.0" in out.stderr and "--auth-file" in out.stderr, out.stderr
    assert not (tmp_path / "ws").exists()
    (tmp_path / "users").write_text("no password here\n")
    out = subprocess.run(
        [sys.executable, "launch.py", "--host", "0.0.0.0", "--auth-file", str(tmp_path / "users")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and f"{tmp_path / 'users'} line 1: expected user:password" in out.stderr


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def remote(workspace: Path, tls: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """The studio as reached from another machine: bound to 0.0.0.0, accounts from a file, https."""
    d = tmp_path_factory.mktemp("remote")
    (d / "users").write_text(f"# studio accounts\n{USER}:{PASSWORD}\n\nbob:other\n")
    cert, key = tls
    proc, s = start_studio(
        workspace,
        d,
        [
            "--host",
            "0.0.0.0",
            "--auth-file",
            str(d / "users"),
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key),
            "--allowed-hosts",
            "studio.lan",
        ],
        scheme="https",
    )
    yield s
    stop_process(proc)


def client(tls: tuple[Path, Path], **kw: Any) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(tls[0])), timeout=30, **kw)


def chat_handshake(studio: Studio, tls: tuple[Path, Path], headers: dict[str, str]) -> bytes:
    """The first message of /api/chat (b"\\x00" once the model is ready)."""
    from websockets.sync.client import connect

    url = studio.url.replace("https", "wss") + "/api/chat"
    with connect(
        url,
        additional_headers=headers,
        ssl=ssl.create_default_context(cafile=str(tls[0])),
        open_timeout=30,
        origin=None,
    ) as ws:
        return ws.recv(timeout=180)


def handshake_status(http: httpx.Client, url: str, headers: dict[str, str]) -> int:
    """The HTTP status a websocket handshake on `url` gets, as a browser sends it (101: accepted). (websockets'
    own client can wait forever for a TLS server to close after a refused handshake: it joins its reader thread.)"""
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    with http.stream("GET", url, headers={**upgrade, **headers}) as r:
        return r.status_code


def chat_refusal(studio: Studio, tls: tuple[Path, Path], headers: dict[str, str]) -> int:
    with client(tls) as c:
        return handshake_status(c, studio.url + "/api/chat", headers)


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
    assert chat_refusal(remote, tls, {"Origin": f"https://{host}"}) == 401

    with client(tls) as browser:
        page = browser.get(remote.url + "/", auth=(USER, PASSWORD))
        assert page.status_code == 200 and "Moshi Studio" in page.text
        cookie = browser.cookies.get("moshi_studio_session")
        assert (
            cookie
            and "httponly" in page.headers["set-cookie"].lower()
            and "secure" in page.headers["set-cookie"].lower()
        )
        # after the login, the page's own requests carry the session cookie only
        assert browser.get(remote.url + "/gradio_api/info").status_code == 200
        assert browser.get(remote.url + f"/gradio_api/file={wav}").content == wav.read_bytes()
        event, payload = call(remote, "list_dialogues", [None], http=browser)
        assert event == "complete" and "demo_cafe" in json.dumps(payload)
    session = {"Cookie": f"moshi_studio_session={cookie}"}
    assert chat_refusal(remote, tls, {**session, "Origin": "https://evil.example"}) == 403  # another site's page
    assert chat_handshake(remote, tls, {**session, "Origin": f"https://{host}"}) == b"\x00"


def test_remote_studio_answers_its_names_only(remote: Studio, tls: tuple[Path, Path]) -> None:
    """Bound to 0.0.0.0: the machine's addresses and names and --allowed-hosts answer; another name is refused
    before the login is even asked for."""
    import socket

    port = remote.url.rsplit(":", 1)[1]
    with client(tls, auth=(USER, PASSWORD)) as c:
        for host in ["studio.lan", f"STUDIO.LAN:{port}", f"10.1.2.3:{port}", f"[fe80::1]:{port}", socket.gethostname()]:
            assert c.get(remote.url + "/config", headers={"Host": host}).status_code == 200, host
    with client(tls) as anonymous:
        for host in [f"evil.example:{port}", f"studio.lan.evil.example:{port}", ""]:
            assert anonymous.get(remote.url + "/config", headers={"Host": host}).status_code == 421, host


def test_remote_studio_speaks_only_tls(remote: Studio, tls: tuple[Path, Path]) -> None:
    with client(tls) as c:  # verified against the certificate given to --ssl-certfile
        assert c.get(remote.url + "/", auth=(USER, PASSWORD)).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(remote.url.replace("https", "http") + "/", auth=(USER, PASSWORD), timeout=10)


# ---------------------------------------------------------------- issue 22.4: DNS rebinding


def test_a_rebound_host_name_is_refused_on_every_route_and_the_websocket(studio: Studio) -> None:
    """A page on a name the attacker points at 127.0.0.1 (DNS rebinding) sends its own name as Host: pages,
    Gradio's config, API and queue, workspace files and the /api/chat handshake must all refuse it."""
    port = studio.url.rsplit(":", 1)[1]
    wav = studio.workspace / "raw" / "demo_cafe.flac"
    evil = {"Host": f"evil.example:{port}"}
    with httpx.Client(timeout=30) as http:
        for path in ["/", "/config", "/gradio_api/config", "/gradio_api/info", f"/gradio_api/file={wav}", "/docs"]:
            r = http.get(studio.url + path, headers=evil)
            assert r.status_code == 421, (path, r.text[:200])
            assert "evil.example" in r.text and "--allowed-hosts" in r.text, r.text
        join = {"data": [None], "fn_index": 0, "session_hash": "rebound", "event_data": None, "trigger_id": None}
        assert http.post(studio.url + "/gradio_api/queue/join", headers=evil, json=join).status_code == 421
        rebound_page = {**evil, "Origin": f"http://evil.example:{port}"}
        assert handshake_status(http, studio.url + "/api/chat", rebound_page) == 421
        # The names of the loopback bind still answer (any port: an SSH tunnel may forward another one).
        for host in [f"127.0.0.1:{port}", f"localhost:{port}", "LocalHost:8000", f"[::1]:{port}", "localhost."]:
            assert http.get(studio.url + "/config", headers={"Host": host}).status_code == 200, host


# ---------------------------------------------------------------- issue 22.5: the standalone chat server


def chat_server_command(ws: Any, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "backend.inference.chat_server",
        "--model",
        str(ws.demo_lm),
        "--mimi",
        str(ws.demo_mimi),
        "--tokenizer",
        str(ws.demo_tokenizer),
        "--device",
        "cpu",
        *args,
    ]


def chat_welcome(
    url: str, origin: str | None = None, headers: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None
) -> bytes:
    """The first message a client gets from the /api/chat at `url` (b"\\x00": the handshake)."""
    from websockets.sync.client import connect

    context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
    with connect(url, origin=origin, additional_headers=headers, ssl=context, open_timeout=30) as ws:
        return ws.recv(timeout=60)


def test_chat_server_off_loopback_needs_accounts_and_explicit_origins(demo_workspace: Any, tmp_path: Path) -> None:
    """Refused at start, before the model is loaded: another machine's clients without accounts (they could
    record into --record-dir), and a wildcard origin off loopback (any site's page could use the model)."""
    env = {k: v for k, v in os.environ.items() if k != "MOSHI_STUDIO_AUTH"}
    (tmp_path / "users").write_text(f"{USER}:{PASSWORD}\n")
    cases = [
        (chat_server_command(demo_workspace, "--host", "0.0.0.0", "--record-dir", str(tmp_path)), "--auth-file"),
        (
            chat_server_command(
                demo_workspace, "--host", "0.0.0.0", "--auth-file", str(tmp_path / "users"), "--allowed-origins", "*"
            ),
            "allowed_origins",
        ),
        (
            [
                sys.executable,
                "launch.py",
                "--host",
                "0.0.0.0",
                "--auth-file",
                str(tmp_path / "users"),
                "--allowed-origins",
                "*",
                "--workspace",
                str(tmp_path / "ws"),
            ],
            "allowed_origins",
        ),
        (chat_server_command(demo_workspace, "--allowed-origins", "kyutai.example"), "allowed_origins"),
    ]
    for command, named in cases:
        out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 2 and named in out.stderr and "Traceback" not in out.stderr, (command, out.stderr)
    assert not (tmp_path / "ws").exists() and not list(tmp_path.glob("chat-*"))


def test_chat_server_checks_host_and_origin(demo_workspace: Any) -> None:
    """On loopback without accounts: a rebound Host and another site's page are refused; the names it is bound
    to, clients that are not browsers (no Origin) and the server's own pages are not."""
    from chat_helpers import standalone_server

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with standalone_server(demo_workspace, demo_workspace.demo_lm, port), httpx.Client(timeout=30) as http:
        evil = {"Host": f"evil.example:{port}"}
        r = http.get(url + "/", headers=evil)
        assert r.status_code == 421 and "evil.example" in r.text, r.text
        assert http.get(url + "/").status_code == 200
        assert handshake_status(http, url + "/api/chat", {**evil, "Origin": f"http://evil.example:{port}"}) == 421
        assert handshake_status(http, url + "/api/chat", {"Origin": "https://evil.example"}) == 403
        assert chat_welcome(f"ws://127.0.0.1:{port}/api/chat") == b"\x00"
        assert chat_welcome(f"ws://localhost:{port}/api/chat", origin=f"http://localhost:{port}") == b"\x00"


def test_chat_server_allowed_hosts_and_origins(demo_workspace: Any) -> None:
    """Kyutai's web client served from its own origin connects where the user allows it (--allowed-origins), and
    a name the user gives (--allowed-hosts) is answered; other names and origins are still refused."""
    from chat_helpers import standalone_server

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (
        standalone_server(
            demo_workspace,
            demo_workspace.demo_lm,
            port,
            "--allowed-hosts",
            "chat.lan",
            "--allowed-origins",
            "https://kyutai.example",
            "http://127.0.0.1:5173",
        ),
        httpx.Client(timeout=30) as http,
    ):
        assert http.get(url + "/", headers={"Host": f"chat.lan:{port}"}).status_code == 200
        assert http.get(url + "/", headers={"Host": f"evil.chat.lan:{port}"}).status_code == 421
        assert handshake_status(http, url + "/api/chat", {"Origin": "https://kyutai.example.evil"}) == 403
        assert handshake_status(http, url + "/api/chat", {"Origin": "http://kyutai.example"}) == 403
        for origin in ["https://kyutai.example", "https://KYUTAI.example:443", "http://127.0.0.1:5173"]:
            assert chat_welcome(f"ws://127.0.0.1:{port}/api/chat", origin=origin) == b"\x00", origin


def test_remote_chat_server_needs_a_login_and_speaks_tls(
    demo_workspace: Any, tls: tuple[Path, Path], tmp_path: Path
) -> None:
    """Bound to 0.0.0.0 with accounts and TLS, recording: an anonymous client gets neither the page nor the
    model, and records nothing; a client with an account talks over wss."""
    from chat_helpers import standalone_server

    (tmp_path / "users").write_text(f"{USER}:{PASSWORD}\n")
    cert, key = tls
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    login = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    with (
        standalone_server(
            demo_workspace,
            demo_workspace.demo_lm,
            port,
            "--host",
            "0.0.0.0",
            "--auth-file",
            str(tmp_path / "users"),
            "--ssl-certfile",
            str(cert),
            "--ssl-keyfile",
            str(key),
            "--record-dir",
            str(tmp_path / "rec"),
        ),
        client(tls) as http,
    ):
        r = http.get(url + "/")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert handshake_status(http, url + "/api/chat", {}) == 401
        assert (
            handshake_status(
                http,
                url + "/api/chat",
                {"Authorization": "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode()},
            )
            == 401
        )
        assert not (tmp_path / "rec").exists()
        assert http.get(url + "/", headers=login).status_code == 200
        assert chat_welcome(f"wss://127.0.0.1:{port}/api/chat", headers=login, tls=tls) == b"\x00"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", headers=login, timeout=10)


# ---------------------------------------------------------------- issue 22.14: TLS files that cannot serve


@pytest.fixture(scope="module")
def bad_tls(tls: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-tls")
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    subprocess.run(["openssl", "genrsa", "-out", str(d / "other-key.pem"), "2048"], check=True, capture_output=True)
    return {"garbage": d / "garbage.pem", "other_key": d / "other-key.pem"}


@pytest.mark.parametrize("server", ["studio", "chat-server"])
@pytest.mark.parametrize("case", ["garbage certificate", "garbage key", "mismatched key"])
def test_tls_files_that_cannot_serve_are_refused_at_start_in_one_line(
    server: str, case: str, tls: tuple[Path, Path], bad_tls: dict[str, Path], demo_workspace: Any, tmp_path: Path
) -> None:
    cert, key = tls
    cert, key, named = {
        "garbage certificate": (bad_tls["garbage"], key, bad_tls["garbage"]),
        "garbage key": (cert, bad_tls["garbage"], bad_tls["garbage"]),
        "mismatched key": (cert, bad_tls["other_key"], bad_tls["other_key"]),
    }[case]
    flags = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    command = (
        [sys.executable, "launch.py", "--workspace", str(tmp_path / "ws"), *flags]
        if server == "studio"
        else chat_server_command(demo_workspace, *flags)
    )
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and str(named) in errors[0], out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "ws").exists()
