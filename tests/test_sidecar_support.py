"""Helpers of the sidecar tests (no tests here): a real ``mlgov serve`` process, a TCP proxy to
cut a database or server away, flight rows as request bodies, and polling with a deadline."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from tests.conftest import free_port

MLGOV = str(Path(sys.executable).parent / "mlgov")
CACHE_SECONDS = 1.0


def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; its last value, or AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def copy_registry(model, tmp_dir: Path, name: str):
    """A private copy of a fixture registry (TrainedModel) in ``tmp_dir``."""
    db = tmp_dir / name
    shutil.copy(model.db_path, db)
    return replace(model, db_path=db, tracking_uri=f"sqlite:///{db}", registry_uri=f"governed-sqlite:///{db}")


def sidecar_env(registry_uri: str | None = None, tracking_uri: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a sidecar process: this one without registry/identity settings, plus those given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_", "PROMETHEUS_"))}
    env.update({"MLGOV_ADMIN": "admin", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    if registry_uri:
        env["MLFLOW_REGISTRY_URI"] = registry_uri
    env.update(extra)
    return env


@dataclass
class Sidecar:
    url: str
    proc: subprocess.Popen
    log: Path
    workdir: Path
    #: basic-auth credentials sent with every request (a sidecar against a governance server)
    auth: tuple[str, str] | None = None

    def post(self, path: str, body: Any = None, *, data: bytes | str | None = None,
             content_type: str = "application/json", timeout: float = 30, session: Any = None) -> requests.Response:
        payload = data if data is not None else json.dumps(body)
        return (session or requests).post(self.url + path, data=payload, headers={"Content-Type": content_type},
                                          timeout=timeout, auth=self.auth)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=30, auth=self.auth)

    def score(self, body: Any) -> requests.Response:
        return self.post("/invocations", body)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def serve_args(*args: str, cache: float = CACHE_SECONDS, workers: int = 2, auth: bool = False) -> list[str]:
    """Test options of ``mlgov serve``; ``--no-auth`` unless ``auth`` (a sidecar on a local registry
    has no governance server to authenticate callers against: test_sidecar_auth covers authentication)."""
    return ["--workers", str(workers), "--monitor-every-rows", "0", "--monitor-every-seconds", "0",
            "--usability-cache-seconds", str(cache), *([] if auth else ["--no-auth"]), *args]


@contextmanager
def run_sidecar(workdir: Path, env: dict[str, str], *args: str, timeout: float = 120.0,
                auth: tuple[str, str] | None = None) -> Iterator[Sidecar]:
    """``mlgov serve`` on a free 127.0.0.1 port (a real gunicorn); stopped with SIGTERM afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / f"sidecar-{port}.log"
    cmd = [MLGOV, "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlgov serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sidecar did not answer within {timeout}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield Sidecar(url, proc, log, workdir, auth)
    finally:
        stop_sidecar(proc)


def stop_sidecar(proc: subprocess.Popen, timeout: float = 40.0) -> int:
    """SIGTERM to ``mlgov serve`` (which stops gunicorn gracefully); its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def serve_once(workdir: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``mlgov serve`` expected to stop on its own (a refusal): the finished process."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [MLGOV, "serve", "--host", "127.0.0.1", "--port", str(free_port()), *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


# --- request bodies from flights -----------------------------------------------------------------


def feature_rows(flights: pd.DataFrame) -> pd.DataFrame:
    from mlflow_governance.core.features import FEATURES
    from mlflow_governance.training.data import feature_frame

    return feature_frame(flights)[list(FEATURES)]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects (NaN as null), the way a client writes them."""
    return json.loads(frame.to_json(orient="records"))


def bodies_for(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The same rows in each of MLflow's four body formats."""
    rows = records(frame)
    columns = list(frame.columns)
    return {
        "dataframe_split": {"dataframe_split": json.loads(frame.to_json(orient="split"))},
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs": {"inputs": {c: [r[c] for r in rows] for c in columns}},
    }


# --- a TCP proxy to take a server away -----------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target_port; `stop` closes the port and every connection
    (the server looks gone), `start` listens on the same port again."""

    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
