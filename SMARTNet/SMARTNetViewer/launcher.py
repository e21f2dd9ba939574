"""``smartnet view``'s front door: one page process (one Slicer scene) per browser session (standard library only).

A trame server shares one state and one scene between every browser connected to it, so each visit of the
launcher's address starts its own :mod:`SMARTNetViewer.page` process on a free port and redirects the browser
there (as trame's own launcher does). A page process exits when its browser has been gone for
``idle_timeout`` seconds; Ctrl-C stops the launcher and every page process.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from SMARTNetLib.contracts.errors import SmartNetError

WEB_PYTHON_ENV = "SMARTNET_WEB_PYTHON"  # a Python with trame-slicer, when not this one or .venv-web
WEB_VENV = ".venv-web"  # made by scripts/setup.sh --web beside the checkout
SETUP_HINT = ("run `bash scripts/setup.sh --web` (trame-slicer pins slicer-core 5.11 and VTK 9.6.0, so it gets its "
              f"own environment, {WEB_VENV}), or set {WEB_PYTHON_ENV} to a Python that has trame-slicer")
START_TIMEOUT_S = 120.0  # importing slicer-core and making the views takes seconds on 2 cores


def web_python() -> str:
    """The Python that runs the page: ``$SMARTNET_WEB_PYTHON``, this one if it has trame-slicer, or the checkout's
    ``.venv-web``."""
    chosen = os.environ.get(WEB_PYTHON_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise SmartNetError(f"{WEB_PYTHON_ENV} names no file", chosen)
        return chosen
    if importlib.util.find_spec("trame_slicer") is not None:
        return sys.executable
    checkout = Path(__file__).resolve().parents[2]
    candidate = checkout / WEB_VENV / "bin" / "python"
    if candidate.is_file():
        return str(candidate)
    raise SmartNetError(f"smartnet view needs trame-slicer, which this environment lacks: {SETUP_HINT}")


def port_problem(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on ('' when it can)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: a closed one's port is free
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno in (98, 48):  # EADDRINUSE on Linux, macOS
                return f"port {port} on {host} is in use (choose another with --port)"
            return f"cannot listen on {host}:{port}: {err.strerror or err}"
    return ""


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class PageProcess:
    """One browser session's page process."""

    process: subprocess.Popen
    port: int
    log: Path
    started: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Launcher:
    """Starts page processes for browser sessions and stops them all on the way out."""

    def __init__(self, output_dir: Path, host: str, port: int, python: str, max_sessions: int = 4,
                 idle_timeout: int = 60, log_dir: Path | None = None) -> None:
        self.output_dir, self.host, self.port, self.python = output_dir, host, port, python
        self.max_sessions, self.idle_timeout = max_sessions, idle_timeout
        self.log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
        self.pages: list[PageProcess] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start_page(self) -> PageProcess:
        """A new page process, once it accepts connections; raises :class:`SmartNetError` if it does not."""
        with self.lock:
            self.pages = [p for p in self.pages if p.alive()]
            if len(self.pages) >= self.max_sessions:
                raise SmartNetError(f"{len(self.pages)} browser sessions are open (the most, --max-sessions); "
                                    "close a tab and wait a minute, or restart smartnet view with a higher limit")
            port = free_port(self.host)
            log = self.log_dir / f"smartnet-view-{os.getpid()}-{port}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [self.python, "-m", "SMARTNetViewer.page", str(self.output_dir), "--host", self.host,
                     "--port", str(port), "--timeout", str(self.idle_timeout)],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            page = PageProcess(process, port, log)
            self.pages.append(page)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not page.alive():
                tail = page.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise SmartNetError(f"the page process ended at start: {tail[0]}", page.log)
            try:
                with socket.create_connection((self.host, port), timeout=1):
                    return page
            except OSError:
                time.sleep(0.25)
        page.stop()
        raise SmartNetError(f"the page process did not start within {START_TIMEOUT_S:.0f} s", page.log)

    def serve(self, on_ready=None) -> None:
        """Serve until Ctrl-C or SIGTERM (raised here as KeyboardInterrupt), then stop every page process."""
        launcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path not in ("/", "/index.html"):
                    self.send_error(404, "smartnet view serves its pages from their own ports; open /")
                    return
                try:
                    page = launcher.start_page()
                except SmartNetError as err:
                    self.send_error(503, str(err).replace("\n", " "))
                    return
                host = (self.headers.get("Host") or launcher.host).rsplit(":", 1)[0]
                self.send_response(302)
                self.send_header("Location", f"http://{host}:{page.port}/index.html")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *_args) -> None:  # keep the terminal for what the user needs
                return

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C stops the viewer even when it was started with SIGINT ignored (a background job of a script)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if on_ready:
            on_ready(f"http://{self.host}:{self.port}/")
        try:
            self.server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.server.server_close()
            self.stop_pages()

    def stop_pages(self) -> None:
        with self.lock:
            pages, self.pages = self.pages, []
        for page in pages:
            page.stop()
            page.log.unlink(missing_ok=True)
