"""The one rule for which dialogues of raw/ Build takes (torch-free: the Data tab lists it too)."""

from backend.core.workspace import Workspace
from backend.data.annotate.edit import is_excluded
from backend.data.files import scan_dialogues


def left_out(ws: Workspace) -> dict[str, str]:
    """Dialogues of raw/ that Build leaves out: name -> why."""
    return {
        d.name: "excluded" for d in scan_dialogues(ws.raw).dialogues if d.audio is not None and is_excluded(d.audio)
    }
