"""Optional py-spy profiles of the web server and Junction's workers (`bench.run --profile`)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.stack import LOG_DIR, ROOT


def start_profilers(stack, seconds: float) -> list[tuple[str, subprocess.Popen, Path]]:
    """py-spy (if installed; profiling only, not a requirement) on the web server and the Junction workers."""
    exe = Path(sys.executable).parent / "py-spy"
    if not exe.exists():
        print("  (py-spy not installed: no profile)", flush=True)
        return []
    running = []
    for name, proc in stack.procs.items():
        if name == "web" or name.startswith("junction-worker"):
            out = LOG_DIR / f"profile-{name}.txt"
            argv = [str(exe), "record", "-p", str(proc.pid), "--subprocesses", "--nonblocking", "-r", "200",
                    "-d", str(int(seconds)), "-f", "raw", "-o", str(out),
                    # e.g. "--gil": only samples holding the GIL, i.e. Python CPU time
                    *os.environ.get("JUNCTION_BENCH_PYSPY_ARGS", "").split()]
            running.append((name, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
    return running


PROJECT_FRAME = re.compile(r"\((?:\S*/)?(?:accounts|config|integrations|interactions|tasks_catalog)/\S+\.py\)$")


def profile_summary(paths: list[Path], top: int = 25) -> dict[str, Any]:
    """Inclusive share of samples per project function, and the top self (leaf) frames overall.

    py-spy samples only threads that are running (not idle in a system call wait), so the
    shares are of CPU-ish time, per group of processes (web, workers).
    """
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = main_process = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            web = "gunicorn" in stack or "uvicorn" in stack
            if "/.venv/" in stack.split(";")[0] and stack.count(";process ") == 0 and not web:
                main_process += n  # a celery worker's main process (not a pool child)
            seen = set()
            for frame in frames:
                key = re.sub(r":\d+\)$", ")", frame)  # one entry per function, not per line
                if key not in seen and PROJECT_FRAME.search(key):
                    seen.add(key)
                    inclusive[key] = inclusive.get(key, 0) + n
            if frames:
                key = re.sub(r":\d+\)$", ")", frames[-1]).replace(str(ROOT) + "/", "")
                key = re.sub(r"\(.*/site-packages/", "(", key)
                leaf[key] = leaf.get(key, 0) + n
    short = lambda k: k.replace(str(ROOT) + "/", "")  # noqa: E731
    return {
        "samples": total,
        "main_process_share": main_process / total if total else 0.0,
        "inclusive": [(short(k), v / total) for k, v in _top(inclusive, top)] if total else [],
        "self": [(k, v / total) for k, v in _top(leaf, top)] if total else [],
    }




def _top(counts: dict[str, int], n: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: -kv[1])[:n]
