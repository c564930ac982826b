"""Running ``python -m thesislib prepare`` in fresh processes with this worktree's package, and reading what
they leave behind (shared by the hardening tests of prepare and of full disks)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def prepare_command(data_dir, *args):
    return [sys.executable, "-m", "thesislib", "prepare", "--data-dir", str(data_dir), *map(str, args)]


def error_lines(stderr: str) -> list:
    """stderr without progress bars (lines ending in a tqdm rate)."""
    return [line for line in stderr.replace("\r", "\n").splitlines()
            if line.strip() and not line.rstrip().endswith(("/s]", "?img/s]", "?B/s]"))]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def leftovers(folder: Path) -> list:
    return sorted(path.name for path in folder.iterdir() if ".tmp-" in path.name or ".old-" in path.name)
