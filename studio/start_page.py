"""The page a new workspace opens on (`launch.py --workspace NEW` without --start): it asks whether the workspace
starts empty (the user's own data) or with the demo, creates it with the same code as `moshi-studio workspace init`
and `init-demo` (backend.demo.workspace.create_workspace), and stops its server; launch.py then serves the studio on
the same address, and the page, which has been asking the server whether it is still the start page, reloads."""

import threading
from pathlib import Path
from typing import Literal

import gradio as gr
from fastapi import FastAPI

from backend.core.errors import ConfigError, StudioError
from backend.core.workspace import KYUTAI_TOKENIZER, Workspace
from backend.demo.workspace import create_workspace
from backend.web.access import Access
from backend.web.gate import AccessGate

from .app import THEME

# The start page's own route: it answers {"asking": true} while this page is served; once the studio serves the
# address instead, the route is gone (the studio answers 404), which tells the page to reload.
WAITING_ROUTE = "start-page"
BUTTONS: dict[str, Literal["empty", "demo"]] = {"Start empty": "empty", "Start with the demo": "demo"}

# Started at the click, before the handler runs: the server stops right after the handler, and the page must not
# depend on the click's answer arriving. A failed choice leaves the start page up, so the loop just goes on waiting.
WAIT_FOR_STUDIO = f"""() => {{
  if (!window.msWaitingForStudio) {{
    window.msWaitingForStudio = true;
    (async () => {{
      for (;;) {{
        await new Promise((r) => setTimeout(r, 500));
        try {{
          const r = await fetch("{WAITING_ROUTE}", {{cache: "no-store"}});
          if (r.status === 200 && (await r.json().catch(() => ({{}}))).asking) continue;
          location.reload();
          return;
        }} catch (e) {{}}  /* nothing answers: between the two servers */
      }}
    }})();
  }}
  return [];
}}"""


class StartChoice:
    """The question of a new workspace, answered once: the first choice creates the workspace and sets `chosen`
    (a second click, from another tab say, finds it made)."""

    def __init__(self, root: Path, language: Literal["en", "ja"]):
        self.root, self.language = root.resolve(), language
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--workspace {root}: is a file; give a folder (a new one, or an existing workspace)")
        self.workspace: Workspace | None = None
        self.chosen = threading.Event()
        self._lock = threading.Lock()  # two buttons are two Gradio events, which may run at once

    def choose(self, start: str) -> Workspace:
        if start not in BUTTONS.values():
            raise ConfigError(f"start: {start!r} is not one of {', '.join(BUTTONS.values())}")
        with self._lock:
            if self.workspace is None:
                self.workspace = create_workspace(self.root, start, self.language)  # type: ignore[arg-type]
            self.chosen.set()
            return self.workspace


def question(choice: StartChoice) -> str:
    """What the page says about the folder and the two choices."""
    found = sorted(p.name for p in choice.root.iterdir()) if choice.root.is_dir() else []
    kept = f" It holds {len(found)} file(s) or folder(s) already; they are kept." if found else ""
    demo = "Japanese (J-Moshi's layout)" if choice.language == "ja" else "English"
    return (
        f"## New workspace\n`{choice.root}` is not a workspace yet.{kept} How should it start?\n\n"
        "- **Start empty**: for your own dialogues. Nothing in `raw/`; the settings point at Kyutai's Mimi and Moshi "
        f"(downloaded on first use) and its tokenizer, `{KYUTAI_TOKENIZER}`, to be put in the workspace.\n"
        f"- **Start with the demo**: the offline demo ({demo}): synthesized dialogues, a small codec and a tiny "
        "random LM to fine-tune on them; nothing is downloaded.\n\n"
        "Later, Settings points the workspace at other models, and the Data tab adds dialogues to `raw/`."
    )


def on_choose(choice: StartChoice, start: str) -> str:
    """Create the workspace as `start` says; the message for the page (raises StudioError if it cannot be made)."""
    ws = choice.choose(start)
    kind = "with the demo" if ws.settings.demo else "empty"
    return f"✔ `{ws.root}` is a workspace ({kind}). Starting the studio: this page reloads when it answers."


def build_blocks(choice: StartChoice) -> gr.Blocks:
    with gr.Blocks(title="Moshi Studio: new workspace") as page:
        gr.Markdown("# Moshi Studio")
        gr.Markdown(question(choice), elem_id="start-question")
        buttons = [gr.Button(label, variant="primary", elem_id=f"start-{start}") for label, start in BUTTONS.items()]
        message = gr.Markdown(elem_id="start-message")
        for button, start in zip(buttons, BUTTONS.values()):

            def click(start: str = start) -> tuple[str, dict, dict]:
                try:
                    text = on_choose(choice, start)
                except (StudioError, OSError) as e:  # OSError: a disk full or a folder it may not write, say
                    raise gr.Error(str(e)) from None
                return text, gr.update(interactive=False), gr.update(interactive=False)

            button.click(click, None, [message, *buttons], js=WAIT_FOR_STUDIO)
    return page


def create_start_server(choice: StartChoice, access: Access) -> FastAPI:
    """The start page's server, behind the studio's access gate (the same host names and accounts)."""
    server = FastAPI(title="Moshi Studio: new workspace")
    server.add_middleware(AccessGate, access=access)

    @server.get(f"/{WAITING_ROUTE}")
    def asking() -> dict[str, bool]:
        return {"asking": True}  # until the studio replaces this server, even after the choice

    page = build_blocks(choice)
    # The page takes no file: Gradio's upload route (there all the same) keeps at most a byte.
    gr.mount_gradio_app(server, page, path="/", theme=THEME, max_file_size=1)
    page.has_launched = True  # restores Gradio's check of the files an event names (studio/app.py, create_server)
    return server
