"""Whether a model-writing stage (init, export) may replace an existing folder: never a folder it reads from, a
training checkpoint or a model in use; another stage's folder (or any other) only when asked (`overwrite`);
its own earlier output, yes (running a stage again is the normal way to redo it)."""

from pathlib import Path

from backend.core.errors import ConfigError
from backend.core.workspace import RUNS_DIR, SETTINGS_FILE, open_workspace
from backend.jobs.control import status
from backend.jobs.folder import CONFIG_FILE, Job, read_json
from backend.models.checkpoints import CHECKPOINTS, COMPLETE, TRAINER_STATE


def check_output(output: Path, stage: str, own_file: str, *sources: Path, overwrite: bool = False) -> None:
    """Refuse, before anything is read, to write `stage`'s model folder over what it must not replace. `own_file`:
    the file only `stage` writes into its folders (its config)."""
    output = output.resolve()
    for source in sources:
        if output == source.resolve() or source.resolve().is_relative_to(output):
            raise ConfigError(f"{output}: the output folder would replace the input {source}; choose another")
    if not output.exists():
        return
    if not output.is_dir():
        raise ConfigError(f"{output}: exists and is a file, not a folder; refusing to replace it")
    if output.parent.name == CHECKPOINTS or (output / COMPLETE).exists() or (output / TRAINER_STATE).exists():
        raise ConfigError(
            f"{output}: is a training checkpoint (its run resumes and exports from it); choose another folder"
        )
    use = in_use(output)
    if use:
        raise ConfigError(f"{output}: is {use}; choose another folder")
    if any(output.iterdir()) and not (output / own_file).is_file() and not overwrite:
        raise ConfigError(
            f"{output}: exists and is not the output of an earlier {stage}; refusing to replace it "
            "(ask for it: --overwrite, or tick 'replace' in the studio)"
        )


def in_use(folder: Path) -> str | None:
    """What uses a model folder of a workspace (None: nothing): the workspace's configured LM or Mimi, or the
    base model of a run that is running. The workspace is the nearest parent holding a settings file."""
    root = next((p for p in folder.parents if (p / SETTINGS_FILE).is_file()), None)
    if root is None:
        return None
    ws = open_workspace(root)
    for what, source in (("the workspace's LM", ws.lm_source), ("the workspace's Mimi", ws.mimi_source)):
        if Path(source).resolve() == folder:
            return f"{what} (Settings)"
    for config_file in sorted((root / RUNS_DIR).glob(f"*/{CONFIG_FILE}")):
        base = read_json(config_file).get("base_model")
        if base and Path(str(base)).resolve() == folder and status(Job(config_file.parent)).get("state") == "running":
            return f"the base model of run {config_file.parent.name}, which is running"
    return None
