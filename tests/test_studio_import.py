"""Cold start (issue 10): the studio's server, and every tab's handlers that run when it is shown, load neither
torch nor moshi; they load when a model is first used. (bench/bench_startup.py measures the time.)"""

import subprocess
import sys
from pathlib import Path

from handler_helpers import make_workspace

REPO = Path(__file__).resolve().parents[1]

SHOW_EVERY_TAB = """
import sys
from backend.core.workspace import open_workspace
from backend.inference.chat_server import ChatService, workspace_chat_config
from studio import chat_tab, continuations_tab, data_tab, finetune_tab, preprocess_tab, timeline_tab
from studio.app import create_server

ws = open_workspace(sys.argv[1])
create_server(ws)
data_tab.on_pick(ws, data_tab.on_shown(ws, None)[1])
timeline_tab.on_refresh(ws, None)
finetune_tab.on_form(ws, *finetune_tab.on_preset(finetune_tab.DEMO_PRESET))
finetune_tab.run_choices(ws)
preprocess_tab.run_choices(ws)
continuations_tab.on_refresh(ws, None, None, None)
chat_tab.on_refresh(ws, ChatService(workspace_chat_config(ws)))
print(sorted(m for m in ("torch", "moshi") if m in sys.modules))
"""


def test_the_studio_starts_and_shows_its_tabs_without_torch(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", SHOW_EVERY_TAB, str(ws.root)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
