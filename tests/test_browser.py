"""One real-browser test: JupyterLab + headless Chromium move a widget's slider and see the plot change.

The widget tests (tests/test_widgets.py) check the Python side without a browser; this one checks
that the front end really renders the explorer and that a slider move travels to the kernel and
back as a new figure. It starts JupyterLab on 127.0.0.1 with a random token in a temporary folder,
copies notebook 02 there in QUICK mode, and runs tests/browser/lab_slider.mjs (playwright-core,
driving Debian's /usr/bin/chromium). Screenshots land in build/artifacts/.

Needs: node, ``npm ci --prefix tests/browser`` (``make test`` does it) and chromium
(``apt-get install chromium``; INVLAB_CHROMIUM points elsewhere). Without them the test skips,
except under CI=true where it fails.
"""

from __future__ import annotations

import json
import os
import secrets
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

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BROWSER_DIR = ROOT / "tests" / "browser"
SCRIPT = BROWSER_DIR / "lab_slider.mjs"
ARTIFACTS = ROOT / "build" / "artifacts"
CHROMIUM = Path(os.environ.get("INVLAB_CHROMIUM", "/usr/bin/chromium"))
NOTEBOOK = ROOT / "notebooks" / "02_flows_in_2d.ipynb"
LAB_START_TIMEOUT = 40  # seconds until JupyterLab answers /api/status
NODE_TIMEOUT = 90  # seconds for the whole browser session

HOW_TO_INSTALL = ("install Chromium with `apt-get install chromium` (Debian), Node.js >= 20 with npm, then "
                  "`npm ci --prefix tests/browser` (`make test` runs it when npm exists)")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _missing_requirements() -> list[str]:
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    if not (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        missing.append("tests/browser/node_modules/playwright-core")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(str(CHROMIUM))
    return missing


def _pids_mentioning(marker: str) -> list[int]:
    """Processes whose command line contains ``marker`` (a path unique to this test run)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in entry.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return [p for p in pids if p != os.getpid()]


def _kill_leftovers(marker: str) -> None:
    """SIGKILL anything still running that this test started (kernels, Chromium helpers)."""
    if not Path("/proc").is_dir():
        return
    for pid in _pids_mentioning(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group of ``proc``, then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:  # children may outlive the leader; the group id stays the leader's pid
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status


def _lab_settings(settings_dir: Path) -> None:
    """User settings for a quiet, deterministic Lab: no news/update toasts, no notebook windowing, and
    the notebook's kernel starts without a "Select Kernel" dialog."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                          "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                       "autoStartDefaultKernel": True},
    }
    for name, content in files.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


@pytest.fixture
def requirements():
    missing = _missing_requirements()
    if missing:
        msg = f"browser test needs {', '.join(missing)}; {HOW_TO_INSTALL}"
        if _in_ci():
            pytest.fail(f"{msg} (CI=true: this test may not be skipped in CI)", pytrace=False)
        pytest.skip(msg)


@pytest.fixture
def lab(tmp_path, requirements):
    """A headless JupyterLab serving ``tmp_path/work``; always shut down, even on failure."""
    work = tmp_path / "work"
    work.mkdir()
    runtime = tmp_path / "runtime"
    settings = tmp_path / "lab-settings"
    _lab_settings(settings)
    port, token = _free_port(), secrets.token_hex(24)
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # the kernel must use the inline backend so figures become images
    # Private Jupyter folders: no user config or user kernelspec (which would shadow the venv's) applies.
    env.update(JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               IPYTHONDIR=str(tmp_path / "ipython"), PYTHONUNBUFFERED="1")
    log_path = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
           f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={work}", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
           "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if _get(f"{base}/api/status?token={token}") == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {LAB_START_TIMEOUT}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield {"base": base, "token": token, "root": work, "log": log_path}
    finally:
        # Polite first (the server shuts its kernels down), then the process group, then strays
        # (kernels run in sessions of their own; their connection files live in `runtime`).
        if proc.poll() is None:
            try:
                req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                             headers={"Authorization": f"token {token}"})
                urllib.request.urlopen(req, timeout=5).close()
                proc.wait(timeout=10)
            except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
                pass
        _stop_group(proc, grace=10)
        _kill_leftovers(str(runtime))


def _start_kernel_session(lab: dict, nb: Path) -> None:
    """Start the notebook's kernel through the REST API before the page opens, so that the page joins
    a running session instead of racing its own kernel start (or asking which kernel to use).
    (The server reports the kernel as "starting" until a client connects; the page waits for idle.)"""
    auth = {"Authorization": f"token {lab['token']}", "Content-Type": "application/json"}
    body = json.dumps({"path": nb.name, "name": nb.name, "type": "notebook", "kernel": {"name": "python3"}})
    req = urllib.request.Request(f"{lab['base']}/api/sessions", data=body.encode(), headers=auth, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.load(r)["kernel"]["id"]


def _quick_copy(src: Path, dest_dir: Path) -> Path:
    """``src`` with QUICK=True and FIGURES inside ``dest_dir``, papermill's way; outputs cleared."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(src))  # nbformat.read plus the metadata papermill expects
    nb = parameterize_notebook(nb, {"QUICK": True, "FIGURES": str(dest_dir / "figures")})
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    dest = dest_dir / src.name
    nbformat.write(nb, dest)
    return dest


def test_slider_moves_and_plot_changes_in_jupyterlab(lab, tmp_path):
    nb = _quick_copy(NOTEBOOK, lab["root"])
    _start_kernel_session(lab, nb)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    before, after = ARTIFACTS / "browser_before.png", ARTIFACTS / "browser_after.png"
    failure = ARTIFACTS / "browser_failure.png"
    for p in (before, after, failure):
        p.unlink(missing_ok=True)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    env = dict(os.environ, LAB_URL=f"{lab['base']}/lab/tree/{nb.name}?token={lab['token']}",
               CHROMIUM=str(CHROMIUM), USER_DATA_DIR=str(profile), SHOT_BEFORE=str(before),
               SHOT_AFTER=str(after), SHOT_FAILURE=str(failure))
    t0 = time.monotonic()
    node = subprocess.Popen(["node", str(SCRIPT)], cwd=BROWSER_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = node.communicate(timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired:
        _stop_group(node, grace=5)  # playwright closes Chromium on SIGTERM
        out, err = node.communicate()
        pytest.fail(f"browser session took over {NODE_TIMEOUT}s\n{err[-3000:]}\n"
                    f"lab log:\n{lab['log'].read_text()[-2000:]}")
    finally:
        _kill_leftovers(str(profile))
    lines = out.strip().splitlines()
    try:
        res = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"no JSON from {SCRIPT.name} (exit {node.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
    print(f"\nbrowser session {time.monotonic() - t0:.1f}s: {json.dumps(res)}")
    for p in (before, after, failure):
        if p.exists():
            print(f"screenshot: {p}")
    assert "error" not in res, (f"{res['error']}\nscreenshot: {failure}\nstderr:\n{err[-3000:]}\n"
                                f"lab log:\n{lab['log'].read_text()[-2000:]}")
    assert res["readout_before"] and res["readout_after"]
    assert res["readout_after"] != res["readout_before"], res
    assert res["image_before"] and res["image_after"] and res["image_after"] != res["image_before"], res
    assert before.stat().st_size > 0 and after.stat().st_size > 0
