"""Benchmark (run by hand, not a test): the studio's cold start against a bare Gradio app (issue 10: at most
1.2x).

    .venv/bin/python bench/bench_startup.py [--repeats 5]

Each measurement is a fresh Python process, timed from spawn to exit (interpreter start included: what a user
waits for). bare = import gradio, one gr.Blocks holding a Markdown, mounted on a FastAPI app. studio = import
studio.app, open a demo workspace (made once beforehand, not timed) and build the whole server as launch.py
does. The two alternate, so that load from other processes hits both alike; medians are printed, and whether
torch was imported by the studio (it must not be: it loads when a model is first used).
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BARE = """
import gradio as gr
from fastapi import FastAPI
with gr.Blocks() as blocks:
    gr.Markdown("# bare")
gr.mount_gradio_app(FastAPI(), blocks, path="/")
"""

STUDIO = """
import sys
from backend.core.workspace import open_workspace
from studio.app import create_server
create_server(open_workspace(sys.argv[1]))
print("torch" in sys.modules, "moshi" in sys.modules)
"""


def timed(code: str, *args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workspace = str(Path(tmp) / "workspace")
        subprocess.run(
            [sys.executable, "-m", "backend.demo.workspace", "init-demo", workspace],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        timed(BARE)  # warm the OS file cache for both before anything counts
        timed(STUDIO, workspace)
        bare: list[float] = []
        studio: list[float] = []
        loaded = ""
        apps = [("bare", bare, BARE, ()), ("studio", studio, STUDIO, (workspace,))]
        for i in range(args.repeats):
            for name, times, code, extra in apps if i % 2 == 0 else apps[::-1]:
                seconds, out = timed(code, *extra)
                times.append(seconds)
                loaded = out or loaded
                print(f"  round {i + 1} {name:6s} {seconds:6.2f} s", flush=True)
    b, s = statistics.median(bare), statistics.median(studio)
    torch_loaded, moshi_loaded = loaded.split()
    print(f"bare gr.Blocks + Markdown : median {b:.2f} s over {args.repeats} runs")
    print(
        f"studio (import + server)  : median {s:.2f} s over {args.repeats} runs  (torch imported: {torch_loaded}, "
        f"moshi imported: {moshi_loaded})"
    )
    print(f"ratio studio / bare       : {s / b:.2f}x (target <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
