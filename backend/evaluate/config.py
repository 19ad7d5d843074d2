"""The evaluate stage's settings and their checks, torch-free (the studio builds its form from them and checks on
every change). Models and probe sets are `LABEL=source` entries: a model is a model folder (an export, the base
model), a training checkpoint (exported clean for the chat loop first) or a hub id; a probe set is a shipped set's
name (assets/probes/<name>) or a folder in Full-Duplex-Bench's sample layout."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backend.core import config
from backend.core.config import option
from backend.core.errors import ConfigError, StudioError
from backend.core.paths import probe_folder
from backend.core.workspace import Workspace
from backend.evaluate import fdb
from backend.inference.chat_config import ChatConfig
from backend.jobs.folder import CONFIG_FILE, Job
from backend.jobs.launch_config import LaunchConfig
from backend.models.source import Dtype

DEFAULT_SET = "studio-en"
MAX_ENTRIES = 64  # models or probe sets in one evaluation
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a label names folders of the evaluation
# Each continued dialogue costs every model a prompt plus 10 s of generation and decoding: a client's huge number
# would hold the machine for days.
MAX_CONTINUED = 10_000
SAMPLING_FIELDS = ("mimi", "dtype", "text_temperature", "text_top_k", "audio_temperature", "audio_top_k", "seed")


@dataclass
class EvaluateConfig(LaunchConfig):
    models: list[str] = option(
        [],
        "models to compare, LABEL=SOURCE each: a model folder (an export, the base "
        "model), a checkpoint (runs/<id>/checkpoints/step-N: exported clean first) or a hub "
        "id; a bare SOURCE is labelled by its folder name",
    )
    probes: list[str] = option(
        [DEFAULT_SET],
        "probe sets: a shipped set's name (assets/probes: studio-en) or a "
        "folder of Full-Duplex-Bench samples (input.wav + task file), LABEL=... optional",
    )
    max_probes: int = option(
        0, "at most this many probes per set and task (0: all); a per-checkpoint check uses a few", ge=0, le=10**6
    )
    mimi: str = option("", "Mimi (empty: the workspace's)")
    tokenizer: str = option("", "SentencePiece model of the LMs' text stream (empty: the workspace's)")
    dtype: Literal["auto", Dtype] = option("auto", "LM dtype (auto: bfloat16 on CUDA, float32 on CPU)")
    text_temperature: float = option(ChatConfig.text_temperature, "text sampling temperature (0: greedy)", ge=0, le=2)
    text_top_k: int = option(ChatConfig.text_top_k, "text top-k", ge=1, le=32000)
    audio_temperature: float = option(
        ChatConfig.audio_temperature, "audio sampling temperature (0: greedy)", ge=0, le=2
    )
    audio_top_k: int = option(ChatConfig.audio_top_k, "audio top-k", ge=1, le=2048)
    seed: int = option(
        ChatConfig.seed, "sampling seed of every probe (each conversation starts from it)", ge=0, le=2**63 - 1
    )
    eval_data: Path | None = option(
        None, "Parquet dataset (its evaluation split) for the per-stream loss of each model (none: no loss)"
    )
    main_speaker: str = option("A", "speaker of eval_data that plays Moshi in the loss", choices=("A", "B"))
    continued_dialogues: int = option(
        8,
        "dialogues of eval_data each model continues for the turn-taking statistics: a fixed pseudo-random sample "
        "picked by a hash of the dialogue ids (the same dialogues for every model and every evaluation of the "
        "split; a larger number keeps them and adds more), every dialogue when the split has fewer; the loss "
        "covers the whole split",
        ge=1,
        le=MAX_CONTINUED,
    )

    def sampling(self) -> dict[str, Any]:
        """The model settings every generation of the evaluation shares: the chat loop's probes and the
        continuations alike (ChatConfig and GenerateConfig have these fields)."""
        return {name: getattr(self, name) for name in SAMPLING_FIELDS}


def split_entry(entry: str) -> tuple[str, str]:
    """`LABEL=SOURCE` -> (label, source); a bare source is labelled by its last path part."""
    label, sep, source = entry.partition("=")
    if not sep:
        label, source = Path(entry.rstrip("/")).name, entry
    label, source = label.strip(), source.strip()
    if not LABEL.match(label):
        raise ConfigError(
            f"{entry!r}: the label {label!r} must be letters, digits, '.', '_' or '-' (at most 64), "
            "starting with a letter or digit; write LABEL=SOURCE"
        )
    if not source:
        raise ConfigError(f"{entry!r}: give a source after the label")
    return label, source


def labelled(entries: list[str], what: str) -> dict[str, str]:
    if not entries:
        raise ConfigError(f"{what}: give at least one")
    if len(entries) > MAX_ENTRIES:
        raise ConfigError(f"{what}: at most {MAX_ENTRIES}, got {len(entries)}")
    out: dict[str, str] = {}
    for entry in entries:
        label, source = split_entry(entry)
        if label in out:
            raise ConfigError(f"{what}: the label {label!r} is used twice; name them LABEL=SOURCE")
        out[label] = source
    return out


def check(cfg: EvaluateConfig, ws: Workspace) -> None:
    """Refuse settings before launch, naming the entry and the problem."""
    labelled(cfg.models, "models")
    for label, source in labelled(cfg.probes, "probes").items():
        fdb.find_samples(probe_folder(ws.root, source))  # names the folder when it holds no sample
    for label, source in labelled(cfg.models, "models").items():
        path = Path(ws.resolve(source))
        if not path.exists() and (source.startswith((".", "/")) or source.count("/") != 1):
            raise ConfigError(f"models: {label}={source}: no such folder in the workspace, nor a hub id (owner/name)")
    if cfg.eval_data is not None and not Path(ws.resolve(str(cfg.eval_data))).exists():
        raise ConfigError(f"eval_data: {cfg.eval_data} does not exist")


def load(run: Job) -> EvaluateConfig:
    """The settings an evaluation folder was started with."""
    try:
        saved = json.loads((run.dir / CONFIG_FILE).read_text(encoding="utf-8"))["config"]
        return config.from_dict(EvaluateConfig, saved)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StudioError(f"{run.dir}: not an evaluation ({e})") from None
