"""Helpers of the browser tests: where Chromium is, whether the test must run, a throw-away JupyterLab.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``; ``$LQLIB_CHROMIUM`` overrides), driven by
Playwright's Python package pointed at that executable (Playwright's own browser download is not
possible here). Without a browser the tests skip with one line, unless ``$CI`` is set or
``LQLIB_REQUIRE_BROWSER=1`` (``.ci/run`` exports it): then a missing browser is an error.

``JupyterLab(root, log_path, env).start()`` runs ``python -m jupyterlab`` from the current Python
environment (the project's venv: its ``python3`` kernel and its ipywidgets lab extension) on 127.0.0.1,
on a free port, with a random token and ``root`` as root dir. Config, data, runtime, settings, workspace
and IPython folders are fresh temporary ones, so nothing from the user's own Jupyter setup (kernels,
settings, a saved layout, startup files) leaks into the test, and the news/update checks are off (the
machine has no network). The kernel inherits ``env`` (``OMP_NUM_THREADS``, ``PYTHONPATH``).

``stop()`` shuts the kernels down through the REST API, then terminates the server's process group and
any kernel processes it started (SIGTERM, then SIGKILL after a grace period); it is safe to call twice.
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
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil  # ipykernel depends on it


REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "runs" / "browser"
#: flags for Chromium on these machines (closed network, root, no GPU): see the machine notes
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def browser_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("LQLIB_REQUIRE_BROWSER") == "1"


def find_chromium() -> str | None:
    for cand in (os.environ.get("LQLIB_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                 "/usr/bin/chromium"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install -e '.[dev]')"
    return None if find_chromium() else "no Chromium executable (apt-get install chromium)"


#: user settings of the throw-away lab: no "get official Jupyter news?" toast over the page (and no
#: request to the internet); every cell attached to the DOM (the default windowing leaves cells outside
#: the viewport unrendered, which would hide outputs from the test)
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    def __init__(self, root: Path, log_path: Path, env: dict | None = None):
        self.root = Path(root)
        self.log_path = Path(log_path)
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="lqlib-lab-"))
        self._log = None

    # ------------------------------------------------------------------------------------ urls

    def url(self, path: str = "lab", **query) -> str:
        q = "&".join([f"token={self.token}", *(f"{k}={v}" for k, v in query.items())])
        return f"{self.base}/{path.lstrip('/')}?{q}"

    def lab_url(self, relpath: str) -> str:
        """The lab URL opening ``relpath`` (relative to the root dir) in a clean layout."""
        return self.url(f"lab/tree/{relpath}", reset="")

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    # ------------------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60.0) -> "JupyterLab":
        dirs = {name: self._tmp / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
        for d in dirs.values():
            d.mkdir(exist_ok=True)
        for name, values in LAB_SETTINGS.items():
            f = dirs["settings"] / f"{name}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        env = {**os.environ, **self.extra_env,
               "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
               "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
               "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]), "IPYTHONDIR": str(dirs["ipython"]),
               "JUPYTER_PLATFORM_DIRS": "0"}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", "--ServerApp.terminals_enabled=False",
               "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               # a safety net if this process is killed before stop(): idle kernels and the server go away
               "--MappingKernelManager.cull_idle_timeout=600", "--MappingKernelManager.cull_interval=60",
               "--ServerApp.shutdown_no_activity_timeout=900"]
        if os.geteuid() == 0:  # CI machines run as root
            cmd.append("--allow-root")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}; log: {self.log_path}\n"
                                   + self.log_tail())
            try:
                self.api("status")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s; log: {self.log_path}\n"
                           + self.log_tail())

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def kernel_connected(self, relpath: str) -> bool:
        """Whether the notebook ``relpath`` has a kernel that is idle with a browser connected to it."""
        for session in self.api("sessions") or []:
            kernel = session.get("kernel") or {}
            if (session.get("path") == relpath and kernel.get("execution_state") == "idle"
                    and kernel.get("connections", 0) >= 1):
                return True
        return False

    def shutdown_kernels(self) -> None:
        """Shut down every running kernel (best effort)."""
        try:
            for k in self.api("kernels") or []:
                self.api(f"kernels/{k['id']}", method="DELETE")
        except Exception:
            pass

    def stop(self, grace: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                self.shutdown_kernels()  # polite first: the server stops its kernels
            try:
                procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            for p in procs[1:]:  # kernels run in sessions of their own
                try:
                    p.terminate()
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=grace)
            for p in alive:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=grace)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._tmp, ignore_errors=True)
