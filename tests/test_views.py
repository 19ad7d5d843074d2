"""The studio's HTML widgets: structure of the rendered HTML, and real behaviour in chromium."""

import io
import json
import math
import re
import shutil
import struct
import threading
import wave
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from conftest import free_port

from backend.core.spec import DELAYS
from backend.dataset.training_view import delayed_input, training_rows
from studio.alignment_view import ALIGNMENT_JS, render_alignment
from studio.timeline_view import TIMELINE_JS, render_timeline

REPO = Path(__file__).resolve().parents[1]
CSS = (REPO / "assets" / "studio" / "studio.css").read_text()
ARTIFACTS = REPO / "test-artifacts"
NASTY = '<b>&"'


# ---------------------------------------------------------------- synthetic data


def alignment_data(duration: float = 4.0) -> dict[str, Any]:
    bins = int(duration * 40)
    env = {
        s: [[-0.8 * abs(math.sin(i / k)), 0.8 * abs(math.sin(i / k))] for i in range(bins)]
        for s, k in (("A", 7.0), ("B", 11.0))
    }
    words = [
        {"speaker": "A", "word": "hello", "start": 0.30, "end": 0.80},
        {"speaker": "A", "word": NASTY, "start": 0.90, "end": 1.40},
        {"speaker": "B", "word": "yes", "start": 1.20, "end": 1.70},
        {"speaker": "B", "word": "it's", "start": 1.60, "end": 2.00},  # overlaps "yes": second tier row
        {"speaker": "A", "word": "Tschüß", "start": 2.40, "end": 3.10},
        {"speaker": "B", "word": "late", "start": 3.80, "end": 4.30},  # ends after the audio (legal)
    ]
    return {"name": "dlg <1>", "duration": duration, "envelope": env, "words": words, "overlaps": [[1.20, 1.40]]}


def timeline_data(first: int = 0, count: int = 12) -> dict[str, Any]:
    """Shaped like backend.dataset.timeline.timeline_data, built by hand from a small undelayed row."""
    total = first + count
    rng = np.random.default_rng(0)
    labels = {"A": ["PAD", "EPAD", "\u2581hi", "\u2581", NASTY, "PAD"] * 4, "B": ["EPAD", "\u2581ok", "PAD", "PAD"] * 6}
    ids = {"PAD": 3, "EPAD": 0, "\u2581hi": 120, "\u2581": 5, NASTY: 77, "\u2581ok": 300}
    row = {}
    for s in ("A", "B"):
        text = np.array([ids[lab] for lab in labels[s][:total]])
        row[s] = np.concatenate([text[None], rng.integers(0, 2048, (8, total))])
    win = slice(first, total)
    delayed = delayed_input(training_rows(row["A"], row["B"]))[:, first + 1 : total + 1]
    return {
        "dialogue_id": "demo/dlg",
        "start_frame": first,
        "frame_rate": 12.5,
        "frames": list(range(first, total)),
        "times": [f / 12.5 for f in range(first, total)],
        "speakers": {
            s: {
                "text_ids": row[s][0, win].tolist(),
                "text_labels": labels[s][first:total],
                "text_chars": [""] * (total - first),
                "codes": row[s][1:, win].tolist(),
            }
            for s in ("A", "B")
        },
        "main": "A",
        "delayed": {
            "row_names": ["text A"] + [f"A cb{i}" for i in range(8)] + [f"B cb{i}" for i in range(8)],
            "rows": delayed.tolist(),
            "delays": DELAYS,
            "start_step": first + 1,
        },
    }


class Tree(HTMLParser):
    """Elements with their attributes and text; fails the test on mismatched tags."""

    VOID = {"input", "br", "img", "polygon"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict[str, Any]] = []
        self.stack: list[dict[str, Any]] = []
        self.feed(html)
        self.close()
        assert not self.stack, f"unclosed tags: {[e['tag'] for e in self.stack]}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = {"tag": tag, "attrs": dict(attrs), "text": "", "classes": set((dict(attrs).get("class") or "").split())}
        self.elements.append(el)
        if tag not in self.VOID:
            self.stack.append(el)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1]["tag"] == tag, f"unexpected </{tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for el in self.stack:
            el["text"] += data

    def having(self, cls: str) -> list[dict[str, Any]]:
        return [e for e in self.elements if cls in e["classes"]]


# ---------------------------------------------------------------- structure


def test_alignment_words_lanes_and_overlaps() -> None:
    data = alignment_data()
    html = render_alignment(data, "/gradio_api/file=/tmp/a&b.wav")
    tree = Tree(html)
    words = tree.having("word")
    assert [(w["text"], w["attrs"]["data-start"]) for w in words] == [
        (w["word"], f"{w['start']:.3f}") for w in sorted(data["words"], key=lambda w: (w["speaker"], w["start"]))
    ]
    for w in data["words"]:  # each word exactly once, escaped, with its start
        assert html.count(f'data-start="{w["start"]:.3f}"') == 1
    assert html.count("&lt;b&gt;&amp;&quot;") == 2 and NASTY not in html  # the chip and its hover title
    assert "dlg &lt;1&gt;" in html and 'src="/gradio_api/file=/tmp/a&amp;b.wav"' in html

    lanes = tree.having("ms-lane")
    assert [lane["attrs"]["data-speaker"] for lane in lanes] == ["A", "B"]
    assert len([e for e in tree.elements if e["tag"] == "polygon"]) == 2  # one waveform per lane
    # each word sits in its own speaker's lane
    assert "yes" in lanes[1]["text"] and "yes" not in lanes[0]["text"]
    # "it's" overlaps "yes" (same speaker): it goes on the second row
    assert "ms-r1" in next(w for w in words if w["text"] == "it's")["classes"]

    spans = tree.having("overlap")
    assert len(spans) == 1
    span = 4.30  # the last word ends after the 4 s audio: the track covers it
    left = float(re.search(r"left:([\d.]+)%", spans[0]["attrs"]["style"]).group(1))
    width = float(re.search(r"width:([\d.]+)%", spans[0]["attrs"]["style"]).group(1))
    assert left == pytest.approx(100 * 1.2 / span, abs=1e-3) and width == pytest.approx(100 * 0.2 / span, abs=1e-3)
    assert len(tree.having("ms-audio")) == 1 and len(tree.having("ms-playhead")) == 1


def demo_alignment() -> dict[str, Any]:
    """A demo dialogue of the repo through the backend's own preview data."""
    from backend.data.preview import alignment_data as preview

    return preview(REPO / "assets/demo/demo_cafe.flac", REPO / "assets/demo/demo_cafe.json")


def test_alignment_of_a_demo_dialogue() -> None:
    data = demo_alignment()
    tree = Tree(render_alignment(data, "demo_cafe.flac"))
    words = tree.having("word")
    assert len(words) == len(data["words"]) > 10
    assert sorted(w["text"] for w in words) == sorted(w["word"] for w in data["words"])
    assert len(tree.having("overlap")) == len(data["overlaps"])


def test_alignment_html_stays_small_for_a_long_dialogue() -> None:
    data = alignment_data(120.0)
    data["words"] = [
        {"speaker": "AB"[i % 2], "word": f"word{i}", "start": i * 0.05, "end": i * 0.05 + 0.05} for i in range(2400)
    ]
    html = render_alignment(data, "x.wav")
    assert len(Tree(html).having("word")) == 2400
    assert len(html) < 500_000, f"{len(html)} bytes for a 2-minute dialogue"
    assert 'style="width:12000px"' in html  # 100 px per second


def test_timeline_cells_and_training_view() -> None:
    data = timeline_data(first=3, count=10)
    html = render_timeline(data)
    tree = Tree(html)
    rows = [e for e in tree.elements if e["tag"] == "tr"]
    names = [h["text"].split("+")[0].strip() for h in tree.having("ms-rowname")][1:]  # [0] is the frame header
    assert names[:9] == ["text A"] + [f"A cb{i}" for i in range(8)]
    assert names[18:] == data["delayed"]["row_names"] and len(names[18:]) == 17
    assert not tree.having("ms-audio")

    text_a = [e for e in tree.elements if e["tag"] == "td"][:10]  # first body row: text A
    for cell, label in zip(text_a, data["speakers"]["A"]["text_labels"]):
        expected = {"PAD": "ms-pad", "EPAD": "ms-epad"}.get(label, "ms-piece")
        assert expected in cell["classes"], (label, cell)
        if expected == "ms-piece":
            assert cell["text"] == label
    assert "ms-bare" in next(c for c in text_a if c["text"] == "\u2581")["classes"]
    assert html.count("&lt;b&gt;&amp;&quot;") >= 2 and NASTY not in html  # title and text

    # Delayed rows say their delay; a +1 row's column c holds frame c-1's token.
    delayed_heads = tree.having("ms-rowname")[1:][18:]
    assert [h["text"].endswith("+1") for h in delayed_heads] == [d == 1 for d in data["delayed"]["delays"]]
    assert len([r for r in rows if "ms-shift" in r["classes"]]) == 14
    codes_a1 = data["speakers"]["A"]["codes"][1]
    delayed_a1 = data["delayed"]["rows"][2]
    assert delayed_a1[1:] == codes_a1[:-1]
    assert not [c for c in tree.having("ms-init") if c["tag"] == "td"]  # a window past the start has no initial tokens


def test_timeline_marks_initial_tokens_and_audio() -> None:
    data = timeline_data(first=0, count=6)
    tree = Tree(render_timeline(data, "/gradio_api/file=/tmp/w.wav"))
    # At frame 0 the 14 delayed codebook rows still hold the initial token 2048.
    assert len([c for c in tree.having("ms-init") if c["tag"] == "td"]) == 14
    assert [e["attrs"]["data-time"] for e in tree.elements if e["tag"] == "th" and "data-time" in e["attrs"]] == [
        "0.00",
        "0.08",
        "0.16",
        "0.24",
        "0.32",
        "0.40",
    ]
    assert len(tree.having("ms-audio")) == 1


# ---------------------------------------------------------------- real browser


def _write_wav(path: Path, seconds: float, rate: int = 24_000) -> None:
    """Stereo 16-bit tone: A at 220 Hz, B at 330 Hz."""
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        frames += struct.pack(
            "<hh", int(8000 * math.sin(2 * math.pi * 220 * t)), int(8000 * math.sin(2 * math.pi * 330 * t))
        )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves byte ranges, as Gradio does: media seeking needs them."""

    def log_message(self, *args: Any) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start = int(match.group(1))
        end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(data[start : end + 1])


def _page(widget_html: str, js: str, dark: bool) -> str:
    """The widget as gr.HTML shows it: js_on_load runs as a function of `element` (the root)."""
    gradio_dark = (
        "body.dark{--body-text-color:#f3f4f6;--body-text-color-subdued:#9ca3af;"
        "--background-fill-primary:#0b0f19;--background-fill-secondary:#111827;"
        "--border-color-primary:#374151;background:#0b0f19}"
    )
    script = json.dumps(js).replace("</", "<\\/")  # a JS string literal that cannot close the <script>
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{CSS}{gradio_dark}'
        f"body{{font-family:system-ui,sans-serif;margin:16px}}</style></head>"
        f'<body class="{"dark" if dark else ""}"><div id="root">{widget_html}</div>'
        f'<script>new Function("element", {script})'
        f'(document.getElementById("root"));</script></body></html>'
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("site")
    _write_wav(root / "dlg.wav", 4.0)
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(RangeHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def _open(browser, served, name: str, widget_html: str, js: str, dark: bool = False):  # type: ignore[no-untyped-def]
    root, url = served
    (root / f"{name}.html").write_text(_page(widget_html, js, dark))
    page = browser.new_page(viewport={"width": 1100, "height": 640})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/{name}.html")
    return page, errors


@pytest.mark.browser
def test_alignment_click_plays_exactly_the_word(browser, served) -> None:  # type: ignore[no-untyped-def]
    html = render_alignment(alignment_data(), "dlg.wav")
    page, errors = _open(browser, served, "alignment", html, ALIGNMENT_JS)
    page.wait_for_function("document.querySelector('audio').readyState >= 3")
    word = page.locator(".word", has_text=NASTY)
    start, end = float(word.get_attribute("data-start")), float(word.get_attribute("data-end"))
    word.click()
    page.wait_for_function("document.querySelector('audio').currentTime > 0.95", timeout=5000)
    page.wait_for_function("document.querySelector('audio').paused", timeout=5000)
    t = page.evaluate("document.querySelector('audio').currentTime")
    played = page.evaluate(
        "(() => { const r = document.querySelector('audio').played;"
        " return Array.from({length: r.length}, (_, i) => [r.start(i), r.end(i)]); })()"
    )
    assert start <= t <= end + 0.02 and t >= end - 0.08, f"stopped at {t}, word spans {start}-{end}"
    assert any(a <= start + 0.05 and b >= end - 0.08 for a, b in played), played
    assert "ms-active" in (word.get_attribute("class") or "")
    head = page.evaluate("parseFloat(document.querySelector('.ms-playhead').style.left)")
    assert head == pytest.approx(100 * t / 4.3, abs=0.5)

    # Clicking another word moves the highlight; clicking the waveform seeks without playing.
    page.locator(".word", has_text="hello").click()
    page.wait_for_function(
        "document.querySelector('audio').paused && document.querySelector('audio').currentTime > 0.7"
    )
    assert page.locator(".word.ms-active").count() == 1
    box = page.locator(".ms-spk-B .ms-wave").bounding_box()
    track = page.locator(".ms-track").bounding_box()
    page.mouse.click(track["x"] + track["width"] * 3.0 / 4.3, box["y"] + box["height"] / 2)
    page.wait_for_function("Math.abs(document.querySelector('audio').currentTime - 3.0) < 0.05")
    assert page.locator(".word.ms-active").count() == 0 and page.evaluate("document.querySelector('audio').paused")
    assert not errors, errors

    ARTIFACTS.mkdir(exist_ok=True)
    word.click()
    page.wait_for_function("document.querySelector('audio').paused")
    page.screenshot(path=str(ARTIFACTS / "alignment.png"), full_page=True)
    page.close()
    dark, errors = _open(browser, served, "alignment-dark", html, ALIGNMENT_JS, dark=True)
    dark.screenshot(path=str(ARTIFACTS / "alignment-dark.png"), full_page=True)
    assert not errors, errors
    dark.close()

    shutil.copyfile(REPO / "assets/demo/demo_cafe.flac", served[0] / "demo_cafe.flac")
    demo, errors = _open(
        browser, served, "alignment-demo", render_alignment(demo_alignment(), "demo_cafe.flac"), ALIGNMENT_JS
    )
    demo.wait_for_function("document.querySelector('audio').readyState >= 3")
    demo.locator(".word").nth(3).click()
    demo.wait_for_function("document.querySelector('audio').paused && document.querySelector('audio').currentTime > 0")
    demo.screenshot(path=str(ARTIFACTS / "alignment-demo.png"), full_page=True)
    assert not errors, errors
    demo.close()


@pytest.mark.browser
def test_timeline_click_selects_a_column(browser, served) -> None:  # type: ignore[no-untyped-def]
    html = render_timeline(timeline_data(first=0, count=24), "dlg.wav")
    page, errors = _open(browser, served, "timeline", html, TIMELINE_JS)
    page.locator('tbody td[data-c="5"]').first.click()
    selected = page.locator(".ms-sel")
    assert selected.count() == 1 + 2 * 9 + 17  # header + both speakers + training view
    assert page.evaluate("new Set(Array.from(document.querySelectorAll('.ms-sel'), c => c.dataset.c)).size") == 1
    assert page.locator(".ms-tl-info").inner_text() == "frame 5 · 0.40 s · text A: pad · text B: \u2581ok"
    page.wait_for_function("Math.abs(document.querySelector('audio').currentTime - 0.4) < 0.01")
    assert not errors, errors
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "timeline.png"), full_page=True)
    page.close()
    dark, errors = _open(browser, served, "timeline-dark", html, TIMELINE_JS, dark=True)
    dark.screenshot(path=str(ARTIFACTS / "timeline-dark.png"), full_page=True)
    dark.close()


@pytest.mark.browser
def test_alignment_chips_show_whole_words_and_a_new_dialogue_starts_unzoomed(browser, served) -> None:  # type: ignore[no-untyped-def]
    long = alignment_data(20.0)
    long["words"].append({"speaker": "A", "word": "Cappuccino", "start": 6.0, "end": 6.3})  # narrower than its text
    page, errors = _open(browser, served, "alignment-fit", render_alignment(long, "dlg.wav"), ALIGNMENT_JS)
    chip = page.locator(".word", has_text="Cappuccino")
    assert chip.get_attribute("title") == "Cappuccino"  # hovering shows the whole word
    page.wait_for_function(
        "(() => { const w = [...document.querySelectorAll('.word')]"
        ".find(w => w.textContent === 'Cappuccino'); return w.scrollWidth <= w.clientWidth; })()",
        timeout=5000,
    )  # the row is free after it: shown whole, not "C..."

    # Zoom in and scroll, then the next dialogue arrives patched into the same elements (as Gradio does).
    page.locator(".ms-zoom").fill("3")
    page.evaluate("document.querySelector('.ms-scroll').scrollLeft = 2500")
    assert page.evaluate("document.querySelector('.ms-scroll').scrollLeft") > 0
    other = render_alignment(alignment_data(), "dlg.wav")
    page.evaluate(
        """html => {
        const next = new DOMParser().parseFromString(html, 'text/html').querySelector('.ms-align');
        const root = document.querySelector('.ms-align');
        for (const a of ['data-span', 'data-width']) root.setAttribute(a, next.getAttribute(a));
        root.querySelector('.ms-title').textContent = next.querySelector('.ms-title').textContent;
        root.querySelector('.ms-track').innerHTML = next.querySelector('.ms-track').innerHTML;
    }""",
        other,
    )
    page.wait_for_function("document.querySelector('.ms-scroll').scrollLeft === 0", timeout=5000)
    assert page.evaluate("document.querySelector('.ms-zoom').value") == "1"
    assert page.evaluate("document.querySelector('.ms-track').style.width") == page.evaluate(
        "document.querySelector('.ms-align').dataset.width + 'px'"
    )
    assert not errors, errors
    page.close()
