"""Start real server processes for tests: `mlflow server` (optionally the governance app)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import free_port

BIN = Path(sys.executable).parent


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    """Poll ``url`` until it answers (any status) or the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"server did not answer at {url} within {timeout}s:\n{log.read_text()[-4000:]}")


@contextmanager
def mlflow_server(
    workdir: Path,
    backend_uri: str,
    registry_uri: str,
    app_name: str | None = None,
    env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[str]:
    """Run ``mlflow server`` on a free 127.0.0.1 port; yields its base URL."""
    port = free_port()
    log = workdir / f"mlflow-server-{port}.log"
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        backend_uri,
        "--registry-store-uri",
        registry_uri,
        "--artifacts-destination",
        str(workdir / "artifacts"),
    ]
    if app_name:
        cmd += ["--app-name", app_name]
    # MLflow's job runner starts five huey consumers that each import MLflow: on two cores that
    # triples a server's start-up, and no governance test schedules a job.
    # Every test client signs in from 127.0.0.1, and many tests try wrong passwords on purpose: the
    # lock-out is exercised by its own tests (tests/test_signin.py), which set their own limits.
    full_env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLGOV_SIGNIN_MAX_FAILURES": "1000",
                **(env or {})}
    full_env.pop("MLGOV_USER", None)  # the server must never act as the test's local user
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=workdir,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", proc, log)
        yield url
    finally:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=5)
