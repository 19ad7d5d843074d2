// Alignment preview behaviour (HTML from studio/alignment_view.py).
// Runs once per gr.HTML with `element` = the component's root. Every listener is delegated to
// `element` (media events in the capture phase, as they do not bubble), so replacing the
// component's value keeps it working.
const state = new WeakMap(); // <audio> -> {stop: {start, end} | null, timer, raf}

function partsOf(node) {
  const root = node.closest(".ms-align");
  if (!root || !element.contains(root)) return null;
  return {
    root,
    audio: root.querySelector("audio"),
    track: root.querySelector(".ms-track"),
    scroll: root.querySelector(".ms-scroll"),
    head: root.querySelector(".ms-playhead"),
    span: parseFloat(root.dataset.span),
  };
}

function stateOf(audio) {
  if (!state.has(audio)) state.set(audio, { stop: null, timer: 0, raf: 0 });
  return state.get(audio);
}

function clearActive(p) {
  p.root.querySelectorAll(".word.ms-active").forEach((w) => w.classList.remove("ms-active"));
}

function drawPlayhead(p, follow) {
  const x = Math.min(p.audio.currentTime / p.span, 1);
  p.head.hidden = false;
  p.head.style.left = `${100 * x}%`;
  if (!follow) return;
  const px = x * p.track.offsetWidth;
  const view = p.scroll;
  if (px < view.scrollLeft || px > view.scrollLeft + view.clientWidth - 20) {
    view.scrollLeft = px - view.clientWidth * 0.2;
  }
}

// Pause exactly at the end of a word being played. `timeupdate` fires only every ~250 ms, so a
// timer aimed at the remaining time re-checks until the end is reached (and the playhead's frame
// loop checks too).
function checkStop(audio) {
  const s = stateOf(audio);
  clearTimeout(s.timer);
  if (!s.stop) return;
  const t = audio.currentTime;
  if (t < s.stop.start - 0.25 || t > s.stop.end + 0.25) {
    s.stop = null; // the user moved elsewhere: forget the word
    return;
  }
  if (t >= s.stop.end - 0.005) {
    const end = s.stop.end;
    s.stop = null;
    audio.pause();
    if (audio.currentTime > end) audio.currentTime = end;
    return;
  }
  if (!audio.paused) {
    const rate = audio.playbackRate || 1;
    s.timer = setTimeout(() => checkStop(audio), Math.max(5, ((s.stop.end - t) * 1000) / rate - 3));
  }
}

function frameLoop(audio) {
  const s = stateOf(audio);
  const p = partsOf(audio);
  cancelAnimationFrame(s.raf); // "playing" can fire again (after buffering): one loop only
  if (!p) return;
  checkStop(audio);
  drawPlayhead(p, true);
  if (!audio.paused) s.raf = requestAnimationFrame(() => frameLoop(audio));
}

function playWord(p, word) {
  const start = parseFloat(word.dataset.start);
  const end = parseFloat(word.dataset.end);
  const s = stateOf(p.audio);
  clearActive(p);
  word.classList.add("ms-active");
  s.stop = { start, end };
  p.audio.currentTime = start;
  drawPlayhead(p, false);
  p.audio.play().catch(() => {
    s.stop = null;
  });
}

element.addEventListener("click", (e) => {
  const word = e.target.closest(".ms-align .word");
  const p = partsOf(e.target);
  if (!p) return;
  if (word) {
    playWord(p, word);
  } else if (e.target.closest(".ms-lanes")) {
    const box = p.track.getBoundingClientRect();
    stateOf(p.audio).stop = null;
    clearActive(p);
    p.audio.currentTime = Math.max(0, ((e.clientX - box.left) / box.width) * p.span);
    drawPlayhead(p, false);
  }
});

// A chip whose word is wider than its span shows whole when the next chip of its row leaves room.
function fitWords(root) {
  root.querySelectorAll(".ms-tier").forEach((tier) => {
    const rows = new Map();
    tier.querySelectorAll(".word").forEach((w) => {
      const row = w.className.match(/ms-r\d/)?.[0];
      if (!rows.has(row)) rows.set(row, []);
      rows.get(row).push(w);
    });
    rows.forEach((words) => {
      words.sort((a, b) => a.offsetLeft - b.offsetLeft);
      words.forEach((w, i) => {
        w.classList.remove("ms-fits");
        const next = words[i + 1];
        const room = next ? next.offsetLeft - w.offsetLeft : Infinity;
        if (w.scrollWidth > w.clientWidth && w.scrollWidth + 2 <= room) w.classList.add("ms-fits");
      });
    });
  });
}

// A newly shown dialogue starts at zoom 1, scrolled to its start (the DOM may be patched in place,
// which would keep the previous dialogue's zoom and scroll).
let shown = null;
function onNewValue() {
  const root = element.querySelector(".ms-align");
  if (!root) return;
  const key = `${root.querySelector(".ms-title")?.textContent}|${root.dataset.span}`;
  if (key === shown) return;
  shown = key;
  const zoom = root.querySelector(".ms-zoom");
  if (zoom) zoom.value = "1";
  root.querySelector(".ms-track").style.width = `${root.dataset.width}px`;
  root.querySelector(".ms-scroll").scrollLeft = 0;
  fitWords(root);
}
new MutationObserver(onNewValue).observe(element, { childList: true, subtree: true, characterData: true });
onNewValue();

element.addEventListener("input", (e) => {
  if (!e.target.matches(".ms-align .ms-zoom")) return;
  const p = partsOf(e.target);
  if (!p) return;
  // Keep the time at the centre of the view where it is.
  const centre = (p.scroll.scrollLeft + p.scroll.clientWidth / 2) / p.track.offsetWidth;
  p.track.style.width = `${Math.round(parseFloat(p.root.dataset.width) * parseFloat(e.target.value))}px`;
  p.scroll.scrollLeft = centre * p.track.offsetWidth - p.scroll.clientWidth / 2;
  fitWords(p.root);
});

element.addEventListener(
  "playing",
  (e) => {
    if (e.target.matches(".ms-align audio")) frameLoop(e.target);
  },
  true,
);
element.addEventListener(
  "seeked",
  (e) => {
    const p = e.target.matches(".ms-align audio") && partsOf(e.target);
    if (p) drawPlayhead(p, false);
  },
  true,
);
element.addEventListener(
  "pause",
  (e) => {
    if (e.target.matches(".ms-align audio")) stateOf(e.target).stop = null;
  },
  true,
);
