"""Security review finding 7: ``mlgov users add`` is all-or-nothing and never shows a password hash.

Against a real ``mlflow server --app-name governance``: a typo in ``--role`` used to create the
user and then fail, and the retry failed with MLflow's raw IntegrityError, whose text carries the
SQL and the new password's scrypt hash. Now the roles are checked first, an existing user is one
line, a failed grant is undone, and the server itself scrubs database text from the user routes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import PERMISSION_DENIED

from mlflow_governance.cli.main import cli
from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.errors import leaks_database_text
from mlflow_governance.server.users import GENERIC_MESSAGE, clean_message
from tests.cli_in_process import mlgov as mlgov_in_process
from tests.servers import mlflow_server

ADMIN_PASSWORD = "admin-pass-" + os.urandom(4).hex()
MLGOV = str(Path(sys.executable).parent / "mlgov")
LEAKS = ("IntegrityError", "INSERT", "scrypt", "[SQL", "sqlite3", "password_hash", "UNIQUE constraint")


def password(user: str) -> str:
    return f"{user}-password-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_template):
    """A governance server on SQLite (users are created by the tests); yields (url, log file)."""
    workdir = tmp_path_factory.mktemp("users-add")
    shutil.copy(sqlite_template, workdir / "mlflow.db")  # already migrated: the server starts sooner
    backend = f"sqlite:///{workdir}/mlflow.db"
    env = {"MLGOV_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
           "MLGOV_ADMIN": "admin"}
    with mlflow_server(workdir, backend, "governed-" + backend, app_name="governance", env=env) as url:
        (log,) = workdir.glob("mlflow-server-*.log")
        yield url, log


def admin_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    env.update({"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD})
    return env


def mlgov(url: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return mlgov_in_process(*args, env=admin_env(url), cwd=cwd)


def user_exists(url: str, username: str) -> bool:
    """MLflow's own ``users/get`` as the admin."""
    r = requests.get(f"{url}/api/2.0/mlflow/users/get", params={"username": username}, auth=("admin", ADMIN_PASSWORD),
                     timeout=30)
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


def roles_of(url: str, username: str) -> set[str]:
    return {r["role"] for r in RestGovernance(url, "admin", ADMIN_PASSWORD).roles() if r["username"] == username}


def no_leak(text: str) -> None:
    for word in LEAKS:
        assert word.lower() not in text.lower(), (word, text)


def test_typo_in_role_creates_nothing_and_the_retry_succeeds(server, tmp_path):
    url, _ = server
    p = mlgov(url, "users", "add", "devi", "--role", "ModelDevloper", "--password", password("devi"), cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
    (line,) = p.stderr.strip().splitlines()
    assert line == (f"Error: unknown role 'ModelDevloper' (did you mean ModelDeveloper?); "
                    f"valid roles: {', '.join(wf.ALL_ROLES)}")
    assert not user_exists(url, "devi")
    # Refused while parsing: no password prompt for a command that cannot succeed.
    p = mlgov(url, "users", "add", "devi", "--role", "ModelDevloper", cwd=tmp_path)
    assert p.returncode == 2 and "Password" not in p.stdout + p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not user_exists(url, "devi")

    p = mlgov(url, "users", "add", "devi", "--role", wf.MODEL_DEVELOPER, "--password", password("devi"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["user devi created", f"granted: devi {wf.MODEL_DEVELOPER}"]
    assert user_exists(url, "devi") and roles_of(url, "devi") == {wf.MODEL_DEVELOPER}
    assert RestGovernance(url, "devi", password("devi")).whoami() == {"user": "devi", "roles": [wf.MODEL_DEVELOPER]}


def test_adding_an_existing_user_is_one_line_without_database_text(server, tmp_path):
    url, _ = server
    p = mlgov(url, "users", "add", "erin", "--password", password("erin"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = mlgov(url, "users", "add", "erin", "--role", wf.MODEL_DATA_ENGINEER, "--password", "another-password-1",
              cwd=tmp_path)
    assert p.returncode == 3 and p.stdout == "", (p.returncode, p.stdout, p.stderr)
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("Error: user erin already exists"), line
    no_leak(p.stdout + p.stderr)
    assert roles_of(url, "erin") == set()  # nothing was granted by the refused command
    assert RestGovernance(url, "erin", password("erin")).whoami()["user"] == "erin"  # password unchanged


@pytest.mark.parametrize("prefix", ["/api/2.0", "/ajax-api/2.0"])
def test_the_server_never_sends_sql_or_a_hash_for_a_duplicate_user(server, prefix):
    url, log = server
    name = f"dup{prefix.count('ajax')}"
    body = {"username": name, "password": password(name)}
    r = requests.post(f"{url}{prefix}/mlflow/users/create", json=body, auth=("admin", ADMIN_PASSWORD), timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(f"{url}{prefix}/mlflow/users/create", json={**body, "password": "other-password-1"},
                      auth=("admin", ADMIN_PASSWORD), timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    error = r.json()
    assert error["error_code"] == "RESOURCE_ALREADY_EXISTS", error
    no_leak(r.text)
    if "IntegrityError" in log.read_text():
        # MLflow up to 3.17 puts the SQL and the new password's hash in the message: the hook sends a
        # clean one, and the original stays in the server's log for the operator.
        assert error["message"] == f"user {name} already exists"
        assert f"{prefix}/mlflow/users/create" in log.read_text()
    else:
        # MLflow 3.18 sends a clean message of its own, which the hook leaves alone.
        assert error["message"] == f"User (username={name}) already exists.", error
    # Other user-route errors are left alone.
    r = requests.get(f"{url}{prefix}/mlflow/users/get", params={"username": "nobody-here"},
                     auth=("admin", ADMIN_PASSWORD), timeout=30)
    assert r.status_code == 404 and "nobody-here" in r.json()["message"]


def test_a_failed_grant_removes_the_user_again(server, monkeypatch):
    """All or nothing: the second grant fails after the user and the first role exist."""
    url, _ = server
    for key, value in admin_env(url).items():
        if key.startswith("MLFLOW_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    real_grant = RestGovernance.grant

    def flaky_grant(self, user, role):
        if role == wf.MODEL_VALIDATOR:
            raise MlflowException("the role table is locked", error_code=PERMISSION_DENIED)
        return real_grant(self, user, role)

    monkeypatch.setattr(RestGovernance, "grant", flaky_grant)
    r = CliRunner().invoke(cli, ["users", "add", "victor", "--role", wf.MODEL_MONITOR, "--role", wf.MODEL_VALIDATOR,
                                 "--password", password("victor")], catch_exceptions=False)
    assert r.exit_code == 3, r.output
    assert r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"Error: granting {wf.MODEL_VALIDATOR} to victor failed: the role table is locked; "
        "user victor was not created (removed again)"
    ]
    assert not user_exists(url, "victor") and roles_of(url, "victor") == set()
    monkeypatch.setattr(RestGovernance, "grant", real_grant)
    r = CliRunner().invoke(cli, ["users", "add", "victor", "--role", wf.MODEL_MONITOR, "--role", wf.MODEL_VALIDATOR,
                                 "--password", password("victor")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert roles_of(url, "victor") == {wf.MODEL_MONITOR, wf.MODEL_VALIDATOR}


def test_database_text_is_recognised_and_replaced():
    """The message MLflow builds in SqlAlchemyStore.create_user, and an older server's answer."""
    raw = ("User (username=devi) already exists. Error: (sqlite3.IntegrityError) UNIQUE constraint failed: "
           "users.username\n[SQL: INSERT INTO users (username, password_hash, is_admin) VALUES (?, ?, ?)]\n"
           "[parameters: ('devi', 'scrypt:32768:8:1$abc$def', 0)]")
    assert leaks_database_text(raw)
    assert clean_message(raw, "RESOURCE_ALREADY_EXISTS") == "user devi already exists"
    assert clean_message(raw, "INTERNAL_ERROR") == GENERIC_MESSAGE
    assert clean_message("User with username=x not found", "RESOURCE_DOES_NOT_EXIST") == "User with username=x not found"
