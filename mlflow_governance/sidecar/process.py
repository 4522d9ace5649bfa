"""A running ``mlgov serve`` as a child process: started on a free 127.0.0.1 port, waited for, stopped.

For programs that start a sidecar themselves and must stop it whatever happens (the demo, scripts,
the validation's staging sidecar, `mlflow_governance.validation.smoke`): the child gets its own
process group and its output goes to a log file; `wait_healthy` waits for ``/health`` or the
child's exit; `stop` sends SIGTERM to the group or to ``mlgov serve`` alone (gunicorn finishes its
requests and flushes the payload buffer), then SIGKILL to the group after a timeout. Usable as a
context manager.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0
HEALTH_POLL_SECONDS = 0.3


def mlgov_command() -> list[str]:
    """``mlgov`` of this interpreter's environment."""
    binary = Path(sys.executable).parent / "mlgov"
    if binary.exists():
        return [str(binary)]
    return [sys.executable, "-c", "import sys; from mlflow_governance.cli.main import cli; sys.exit(cli())"]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class SidecarProcess:
    """``mlgov serve ARGS --host H --port P LATER_ARGS`` in ``workdir`` with ``env``; its log in
    ``workdir`` (appended to)."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, host: str = "127.0.0.1",
                 port: int | None = None, name: str = "sidecar", later_args: list[str] | None = None):
        self.args, self.env, self.workdir, self.host = list(args), dict(env), Path(workdir), host
        self.later_args = list(later_args or [])
        self.port = port or free_port(host)
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.command: list[str] = []
        #: Whether `stop` had to SIGKILL it (it did not end within the timeout after SIGTERM).
        self.killed = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SidecarProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.command = [*mlgov_command(), "serve", *self.args, "--host", self.host, "--port", str(self.port),
                        *self.later_args]
        with open(self.log_path, "a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log_text(self) -> str:
        """Its log so far ("" when there is none)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 5) -> str:
        return "\n".join(self.log_text().strip().splitlines()[-lines:])

    def wait_healthy(self, deadline: float, poll_seconds: float = HEALTH_POLL_SECONDS) -> int | None:
        """None once ``/health`` answers 200, the exit code if the process ends first; TimeoutError
        when neither has happened by ``deadline`` (a `time.monotonic` time)."""
        import requests

        assert self.proc is not None, "start() first"
        while True:
            code = self.proc.poll()
            if code is not None:
                return code
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return None
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url}/health did not answer")
            time.sleep(poll_seconds)

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Return once ``/health`` answers 200; RuntimeError naming the last log line otherwise."""
        try:
            code = self.wait_healthy(time.monotonic() + timeout)
        except TimeoutError:
            raise RuntimeError(f"mlgov serve did not answer {self.url}/health within {timeout:.0f} s "
                               f"(log: {self.log_path})") from None
        if code is not None:
            raise RuntimeError(f"mlgov serve exited with code {code}: {self.log_tail(1) or 'no output'} "
                               f"(log: {self.log_path})")

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS, group: bool = True) -> int | None:
        """SIGTERM (to its process group; ``group`` False: to ``mlgov serve`` alone, which passes it
        on), then SIGKILL to its process group after ``timeout`` (`killed`); the exit code (None if
        it never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                if group:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                else:
                    self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        return self.proc.returncode

    def __enter__(self) -> SidecarProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
