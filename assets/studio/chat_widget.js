// Chat tab widget (HTML from studio/chat_tab.py): Talk / Stop buttons, live transcript and gauges.
// Runs as a gr.HTML js_on_load body after chat_client.js (window.MoshiChat); `element` is the root.
// One MoshiChat per conversation; the server answers on this page's own host at /api/chat.

const root = element.querySelector(".ms-chat");
const $ = (sel) => root.querySelector(sel);
let chat = null;
let poll = null;

function gauge(name, value) {
  const el = root.querySelector(`[data-gauge="${name}"]`);
  if (el) el.textContent = value;
}

function setState(state) {
  root.dataset.state = state;
  gauge("state", state);
  const live = state === "connecting" || state === "waiting" || state === "live";
  $(".ms-chat-talk").disabled = live;
  $(".ms-chat-stop").disabled = !live;
  if (state === "closed" && poll) {
    clearInterval(poll);
    poll = null;
  }
}

function showStats() {
  if (!chat) return;
  const s = chat.stats();
  gauge("buffered_ms", Math.round(s.bufferedMs));
  gauge("sent_s", s.sentSeconds.toFixed(1));
  gauge("received_s", s.receivedSeconds.toFixed(1));
  gauge("dropped_s", s.droppedSeconds.toFixed(1));
  gauge("underruns", s.underruns);
}

root.addEventListener("click", async (e) => {
  if (e.target.closest(".ms-chat-talk")) {
    $(".ms-chat-transcript").textContent = "";
    $(".ms-chat-error").textContent = "";
    const proto = location.protocol === "https:" ? "wss" : "ws";
    chat = new window.MoshiChat({
      url: `${proto}://${location.host}/api/chat?meta=1`,
      onText: (piece) => { $(".ms-chat-transcript").textContent += piece; },
      onMeta: (m) => {
        gauge("compute_ms", m.compute_ms.toFixed(1));
        gauge("rtf", m.rtf.toFixed(2));
        gauge("skipped", m.skipped);
        gauge("frames", m.frames);
      },
      onState: setState,
      onError: (msg) => { $(".ms-chat-error").textContent = msg; },
    });
    poll = setInterval(showStats, 250);
    await chat.start();
  } else if (e.target.closest(".ms-chat-stop") && chat) {
    chat.stop();
    showStats();
  }
});
setState("closed");
