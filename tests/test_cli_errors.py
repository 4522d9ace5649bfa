"""What a newcomer sees when the server is down or the identity is set the local way: one line,
naming the URL or what to set, with the exit code the README's table gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

from mlflow_governance.cli.common import EXIT_UNREACHABLE, one_line
from tests.conftest import free_port

MLGOV = str(Path(sys.executable).parent / "mlgov")


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    return subprocess.run([MLGOV, *args], env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [("status", "delay-model"), ("tasks",), ("audit", "verify")])
def test_an_unreachable_server_is_one_line_naming_the_url(args):
    url = f"http://127.0.0.1:{free_port()}"
    p = run(*args, MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME="olivia", MLFLOW_TRACKING_PASSWORD="x")
    assert p.returncode == EXIT_UNREACHABLE == 6, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "is it running?" in lines[0]
    assert "urllib3" not in p.stderr and "HTTPConnectionPool" not in p.stderr and "Traceback" not in p.stderr


def test_mlgov_user_against_a_server_says_what_to_set():
    url = f"http://127.0.0.1:{free_port()}"
    p = run("status", "delay-model", MLFLOW_TRACKING_URI=url, MLGOV_USER="olivia")
    assert p.returncode == 3, p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in line and url in line
    p = run("status", "delay-model", MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME="olivia")
    assert p.returncode == 3 and "MLFLOW_TRACKING_PASSWORD is not" in p.stderr


def test_mlflow_client_errors_about_an_unreachable_server_become_one_line():
    raw = MlflowException(
        "API request to http://127.0.0.1:5999/api/2.0/mlflow/runs/create failed with exception "
        "HTTPConnectionPool(host='127.0.0.1', port=5999): Max retries exceeded with url: "
        "/api/2.0/mlflow/runs/create (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object "
        "at 0x7f>: Failed to establish a new connection: [Errno 111] Connection refused'))"
    )
    message, code = one_line(raw)
    assert code == EXIT_UNREACHABLE
    assert message.startswith("cannot reach http://127.0.0.1:5999/api/2.0/mlflow/runs/create")
    assert "urllib3" not in message
    other = MlflowException("Registered Model with name=x not found\nsecond line", error_code=RESOURCE_DOES_NOT_EXIST)
    assert one_line(other) == ("Registered Model with name=x not found", 4)
