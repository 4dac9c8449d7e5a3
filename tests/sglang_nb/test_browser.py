"""A real JupyterLab in headless Debian chromium (Playwright, no browser download): open the
quickstart notebook, run all cells, see the streamed text and the cache inspector; keep a screenshot
under test-artifacts/."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path, shared_rt: Any) -> Any:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is missing: apt-get install -y chromium")
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", tmp_path / "quickstart.ipynb")
    # Start the notebook's kernel without the "Select Kernel" dialog (JupyterLab asks unless told).
    settings = tmp_path / "lab-settings"
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        '{"autoStartDefaultKernel": true}')
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp_path / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--ServerApp.root_dir={tmp_path}", f"--IdentityProvider.token={token}",
         "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "JUPYTER_TOKEN": token, "JUPYTERLAB_SETTINGS_DIR": str(settings)},
        preexec_fn=_die_with_parent)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/api/status?token={token}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()
            time.sleep(0.5)
        yield url, token
    finally:
        # JupyterLab and the kernels it started share its session: end the whole group, whatever happened.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _die_with_parent() -> None:
    """In the child: SIGKILL JupyterLab if the test process dies without tearing the fixture down."""
    import ctypes

    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def test_quickstart_in_jupyterlab(lab: Any) -> None:
    from playwright.sync_api import sync_playwright

    url, token = lab
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            page.goto(f"{url}/lab/tree/quickstart.ipynb?token={token}", timeout=120_000)
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            _settle_kernel(page)
            # Not awaited: the command's promise resolves only when every cell has run.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_selector(".sglang-nb-footer:has-text('served from cache')", timeout=240_000)
            page.wait_for_selector(".sglang-nb-cache-inspector", timeout=240_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=240_000)
            footer = page.locator(".sglang-nb-footer").first.inner_text()
            assert "prompt tokens served from cache" in footer
            assert page.locator(".sglang-nb-output pre").first.inner_text().strip()
            assert "hit rate" in page.locator(".sglang-nb-cache-inspector").inner_text()
        finally:
            page.screenshot(path=str(artifacts / "quickstart_jupyterlab.png"), full_page=True)
            browser.close()


def _settle_kernel(page: Any, quiet_s: float = 3.0, timeout_s: float = 120.0) -> None:
    """Wait until the kernel is idle and no dialog has shown for `quiet_s`, accepting any kernel
    dialog on the way (a late "Select Kernel" dialog would otherwise swallow the run)."""
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        select = page.locator(".jp-Dialog button:has-text('Select')")
        if select.count():
            select.first.click()
            quiet_since = time.monotonic()
        elif page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count() == 0:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        page.wait_for_timeout(250)
    raise AssertionError("the notebook's kernel did not settle (idle, no dialog)")
