// Curation behaviour (HTML from studio/curate.py, inside the alignment preview of the Curate block).
// Select a word (click), change it from the edit bar, or drag its left/right edge to retime it.
// Every edit goes to the server as one JSON event through the hidden #curate-event textbox; the
// server checks it, applies it to its TranscriptEditor and sends the whole preview back.
const EDGE_PX = 6; // a press this close to a word's edge drags that edge

function curBar(node) {
  const bar = node.closest(".ms-curate");
  return bar && element.contains(bar) ? bar : null;
}

function curSend(event) {
  const box = document.querySelector("#curate-event textarea, #curate-event input");
  if (!box) return;
  event.nonce = `${Date.now()}-${Math.random()}`; // the same edit twice is still a new value
  box.value = JSON.stringify(event);
  box.dispatchEvent(new Event("input", { bubbles: true }));
}

function curSelect(bar, word) {
  bar.querySelectorAll(".word.ms-sel, .word[data-selected]").forEach((w) => {
    w.classList.remove("ms-sel");
    w.removeAttribute("data-selected");
  });
  word.classList.add("ms-sel");
  bar.dataset.sel = word.dataset.i;
  const field = (name) => bar.querySelector(`.cur-${name}`);
  field("text").value = word.textContent;
  field("start").value = word.dataset.start;
  field("end").value = word.dataset.end;
  field("at").value = ((parseFloat(word.dataset.start) + parseFloat(word.dataset.end)) / 2).toFixed(3);
  field("spk").value = word.closest(".ms-lane").dataset.speaker;
  field("label").textContent = `word ${word.dataset.i}`;
}

function curNext(bar, i) {
  // The next word of the same speaker in time: the merge partner.
  const word = bar.querySelector(`.word[data-i="${i}"]`);
  const lane = [...word.closest(".ms-tier").querySelectorAll(".word")];
  lane.sort((a, b) => parseFloat(a.dataset.start) - parseFloat(b.dataset.start));
  const next = lane[lane.indexOf(word) + 1];
  return next ? parseInt(next.dataset.i, 10) : -1;
}

function curEvent(bar, op) {
  const v = (name) => bar.querySelector(`.cur-${name}`).value;
  const num = (name) => parseFloat(v(name));
  const i = parseInt(bar.dataset.sel ?? "-1", 10);
  const words = v("text").trim().split(/\s+/);
  switch (op) {
    case "text": return { op, i, text: v("text") };
    case "times": return { op, i, start: num("start"), end: num("end") };
    case "delete": return { op, i };
    case "insert": return { op, speaker: v("spk"), text: v("text"), start: num("start"), end: num("end") };
    case "split":
      return { op, i, at: num("at"), first: words[0] || "", second: words.slice(1).join(" ") || words[0] || "" };
    case "merge": return { op, i, j: curNext(bar, i) };
    default: return null;
  }
}

element.addEventListener("click", (e) => {
  const bar = curBar(e.target);
  if (!bar) return;
  const word = e.target.closest(".word[data-i]");
  if (word && !bar.dataset.dragged) curSelect(bar, word);
  const button = e.target.closest("button[data-op]");
  if (button) {
    const event = curEvent(bar, button.dataset.op);
    if (event) curSend(event);
  }
});

// Dragging an edge: the box follows the pointer; releasing sends the new times.
let drag = null;
element.addEventListener("pointerdown", (e) => {
  const word = e.target.closest(".ms-curate .word[data-i]");
  if (!word) return;
  const box = word.getBoundingClientRect();
  const edge = e.clientX - box.left < EDGE_PX ? "start" : box.right - e.clientX < EDGE_PX ? "end" : null;
  if (!edge) return;
  const bar = curBar(word);
  const track = word.closest(".ms-track").getBoundingClientRect();
  drag = { bar, word, edge, track, span: parseFloat(word.closest(".ms-align").dataset.span), moved: false };
  delete bar.dataset.dragged;
  word.setPointerCapture(e.pointerId);
  e.preventDefault();
});
element.addEventListener("pointermove", (e) => {
  if (!drag) return;
  const t = Math.min(Math.max(((e.clientX - drag.track.left) / drag.track.width) * drag.span, 0), drag.span);
  const w = drag.word.dataset;
  if (drag.edge === "start") w.start = Math.min(t, parseFloat(w.end)).toFixed(3);
  else w.end = Math.max(t, parseFloat(w.start)).toFixed(3);
  drag.word.style.left = `${(100 * w.start) / drag.span}%`;
  drag.word.style.width = `${(100 * (w.end - w.start)) / drag.span}%`;
  drag.moved = true;
});
element.addEventListener("pointerup", () => {
  if (!drag) return;
  const { bar, word, moved } = drag;
  drag = null;
  if (!moved) return;
  bar.dataset.dragged = "1"; // the click that follows the release is not a selection
  setTimeout(() => delete bar.dataset.dragged, 0);
  const i = parseInt(word.dataset.i, 10);
  curSend({ op: "times", i, start: parseFloat(word.dataset.start), end: parseFloat(word.dataset.end) });
});
