"""`make lab` starts JupyterLab, which serves every chapter as a notebook (through jupytext) and the run notebook."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

from lab2 import PROJECT_ROOT

TOKEN = "lab2-test"
START_SECONDS = 90  # JupyterLab loads its extensions in a few seconds; a loaded machine takes longer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_make_lab_serves_the_chapters_as_notebooks():
    port = free_port()
    # -o: the venv is taken as it is, so the test never reinstalls requirements.
    server = subprocess.Popen(
        ["make", "-o", ".venv/.installed", "lab", "PROFILE=smoke",
         f"ARGS=--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={TOKEN}"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/api/contents"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                chapter = get(f"{base}/intro.md?type=notebook")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
                time.sleep(1)
        assert chapter["type"] == "notebook"
        code = [cell["source"] for cell in chapter["content"]["cells"] if cell["cell_type"] == "code"]
        assert any("load()" in source for source in code)  # the chapter's set-up, as a cell to run
        assert get(f"{base}/run.ipynb")["type"] == "notebook"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
