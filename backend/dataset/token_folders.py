"""Token folders hold `<name>.npz` files and nothing else, so that J-Moshi's own tools read what the studio writes.

J-Moshi's `tools/prepare_dataset.py` (nu-dialogue/moshi-finetune) lists every entry of the text and the audio
token folder (`os.listdir`, extension dropped), stops ("Missing tokenized audio for N dialogues") unless both
lists name the same dialogues, then loads `<name>.npz` for each. What the studio writes about a token folder
therefore goes beside it, never inside: `<folder>.config.json` (the settings that made it) and `<folder>.audits/`
(per-dialogue audits), e.g. `tokens/text` -> `tokens/text.audits/<name>.audit.json`.
"""

from pathlib import Path


def config_beside(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.config.json")


def audits_beside(folder: Path) -> Path:
    return folder.with_name(f"{folder.name}.audits")
