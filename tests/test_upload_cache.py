"""The upload cache over HTTP against `launch.py` (issue 22 items 12 and 14): uploads no event uses are deleted,
one request carries at most one file of the limit and a transcript, and messages name uploads, not the server's
cache paths."""

import json
import os
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import stop_process
from test_security import Studio, cache_files, call, file_payload, start_studio, upload


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A local studio with a 1 MB upload limit that keeps unused uploads 3 seconds."""
    from backend.demo.workspace import create_demo_workspace

    workspace = create_demo_workspace(tmp_path_factory.mktemp("cache") / "workspace").root
    proc, s = start_studio(
        workspace, tmp_path_factory.mktemp("run"), ["--max-upload-mb", "1", "--upload-keep-minutes", "0.05"]
    )
    yield s
    stop_process(proc)


def test_uploads_no_event_uses_are_deleted(studio: Studio, tmp_path: Path) -> None:
    orphans = []
    for i in range(5):
        (tmp_path / f"raw{i}.wav").write_bytes(os.urandom(2**19))
        r = upload(studio, tmp_path / f"raw{i}.wav")
        assert r.status_code == 200, r.text
        orphans += r.json()
    assert all(Path(p).is_file() for p in orphans)
    deadline = time.monotonic() + 30
    while any(Path(p).exists() for p in orphans) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(Path(p).exists() for p in orphans)


def test_one_request_carries_at_most_one_file_of_the_limit_and_a_transcript(studio: Studio, tmp_path: Path) -> None:
    paths = []
    for i in range(20):  # each within the 1 MB limit, 18 MB together
        paths.append(tmp_path / f"part{i}.wav")
        paths[-1].write_bytes(os.urandom(9 * 2**20 // 10))
    before = set(cache_files(studio))
    r = upload(studio, *paths)
    assert r.status_code == 413 and "upload the files in several requests" in r.text, r.text
    assert set(cache_files(studio)) == before


def test_messages_name_the_upload_not_the_cache_path(studio: Studio, tmp_path: Path) -> None:
    (tmp_path / "cached.wav").write_text("not audio")
    (tmp_path / "cached.json").write_text(json.dumps([{"speaker": "A", "word": "hi", "start": 0.1, "end": 0.5}]))
    (tmp_path / "bad.json").write_text('{"lr": "many"}')
    uploaded = upload(studio, tmp_path / "cached.wav", tmp_path / "cached.json").json()
    event, payload = call(studio, "upload_dialogues", [[file_payload(Path(p), False) for p in uploaded]])
    assert event == "complete" and "cached.wav" in payload[0], payload
    (config,) = upload(studio, tmp_path / "bad.json").json()
    config_event, config_payload = call(studio, "load_config", [file_payload(Path(config), False)])
    for message in (json.dumps(payload), json.dumps(config_payload)):
        assert str(studio.upload_dir) not in message and "gradio/" not in message, message
    assert config_event == "error"
