"""Run a function in a fresh Python process and get its JSON result back.

For measurements that need a process of their own: peak memory (the resident set size of a process
that did only that one thing; ``bench profile`` on the CPU, ``bench profile scoring``). The payload
goes in on stdin and the result comes back on the last line of stdout, both as JSON, so no argument
parsing is involved.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def call(module: str, function: str, payload: dict, timeout: float = 3600.0) -> dict:
    """``module.function(payload)`` in a new interpreter; raises RuntimeError with its stderr on failure."""
    code = (f"import json, sys\nfrom {module} import {function} as f\n"
            f"print(json.dumps(f(json.loads(sys.stdin.read())), default=str))")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(payload), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{module}.{function} in a separate process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """This process's resident set size now."""
    kb = _status_kb("VmRSS")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0: ``/proc/self/clear_refs`` 5); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """This process's peak resident set size (since :func:`reset_peak_rss`, where it worked)."""
    kb = _status_kb("VmHWM")
    return (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
