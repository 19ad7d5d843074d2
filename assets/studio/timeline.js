// Token timeline behaviour (HTML from studio/timeline_view.py).
// Runs once per gr.HTML with `element` = the component's root; listeners are delegated to
// `element` (media events in the capture phase, as they do not bubble) so a new value keeps working.
// Click a column: select it, show the frame's text, and move the window's audio there.
// While the audio plays, the column under the playhead is marked.

function markColumn(root, cls, col) {
  root.querySelectorAll(`.${cls}`).forEach((c) => c.classList.remove(cls));
  if (col !== null) root.querySelectorAll(`[data-c="${col}"]`).forEach((c) => c.classList.add(cls));
}

function describe(root, col) {
  const th = root.querySelector(`thead [data-c="${col}"]`);
  const texts = Array.from(root.querySelectorAll("tr.ms-text:not(.ms-train)"), (row) => {
    const cell = row.querySelector(`[data-c="${col}"]`);
    return `${row.querySelector("th").textContent}: ${cell ? cell.title || cell.textContent : ""}`;
  });
  return [`frame ${th.dataset.frame}`, `${th.dataset.time} s`, ...texts].join(" · ");
}

element.addEventListener("click", (e) => {
  const cell = e.target.closest(".ms-tl [data-c]");
  if (!cell || !element.contains(cell)) return;
  const root = cell.closest(".ms-tl");
  const col = cell.dataset.c;
  markColumn(root, "ms-sel", col);
  root.querySelector(".ms-tl-info").textContent = describe(root, col);
  const audio = root.querySelector("audio");
  if (audio) audio.currentTime = Number(col) / parseFloat(root.dataset.frameRate);
});

const loops = new WeakMap(); // <audio> -> animation frame id ("playing" can fire again: one loop only)

function follow(audio) {
  const root = audio.closest(".ms-tl");
  cancelAnimationFrame(loops.get(audio));
  if (!root || !element.contains(root)) return;
  const col = Math.floor(audio.currentTime * parseFloat(root.dataset.frameRate));
  if (root.dataset.now !== String(col)) {
    root.dataset.now = col;
    markColumn(root, "ms-now", root.querySelector(`thead [data-c="${col}"]`) ? col : null);
  }
  if (!audio.paused) loops.set(audio, requestAnimationFrame(() => follow(audio)));
}

for (const kind of ["playing", "seeked"]) {
  element.addEventListener(kind, (e) => e.target.matches(".ms-tl audio") && follow(e.target), true);
}
