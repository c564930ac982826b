"""`make lab`: JupyterLab starts (as root too: containers and cloud machines run so), prints the URL with its
token, and serves the notebooks: read here through its REST API, then stopped."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from thesislib.paths import PROJECT_ROOT

pytestmark = [pytest.mark.skipif(shutil.which("make") is None, reason="needs make"), pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_url(process) -> str:
    """The URL `make lab` prints before JupyterLab starts."""
    for line in process.stdout:
        match = re.search(r"JupyterLab: open (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("make lab printed no URL")


def contents(base: str, token: str, deadline_s: float = 120):
    """The listing of /api/contents/ once the server answers (it takes seconds to start)."""
    request = urllib.request.Request(f"{base}/api/contents/", headers={"Authorization": f"token {token}"})
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.load(answer)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


def test_make_lab_starts_jupyterlab_prints_its_url_and_serves_the_notebooks(tmp_path):
    port = free_port()
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        ["make", "-s", "lab", "STAMP=", f"BIN={bin_dir}", f"LAB_PORT={port}"], cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        url = read_url(process)
        base, token = url.split("/lab?token=")
        assert base == f"http://127.0.0.1:{port}" and len(token) >= 32
        listing = contents(base, token)
        served = {item["name"] for item in listing["content"] if item["type"] == "notebook"}
        assert served == {path.name for path in (PROJECT_ROOT / "notebooks").glob("*.ipynb")}
        assert process.poll() is None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
