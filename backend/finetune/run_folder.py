"""The file names of a run folder, `<workspace>/runs/<id>/` (runs/ is backend.core.workspace.RUNS_DIR). Torch-free:
the launcher, the supervisor, the trainer and the export all use them; checkpoint folders are
backend.finetune.checkpoints'."""

CONFIG_FILE = "config.json"  # FinetuneConfig with absolute paths
COMMAND_FILE = "command.json"  # {"argv": [...], "env": {...}, "cwd": repo}: what is started
STATUS_FILE = "status.json"  # state, pid/pgid, process start time, exit code, times
LOG_FILE = "train.log"  # stdout+stderr of the whole process tree
METRICS_FILE = "metrics.jsonl"  # one line per logged step or event, written by the trainer's rank 0
ABORT_FILE = "abort"  # asks the trainer for a graceful stop
SUMMARY_PLOT = "loss.png"  # loss curves, drawn by the supervisor when the run ends
LOCK_FILE = ".lock"  # in RUNS_DIR: serialises starts in a workspace
EXPORTS_DIR = "exports"  # export stage's default output: <run>/exports/<checkpoint name>
