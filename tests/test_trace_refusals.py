"""`mlgov trace` / `mlgov explain` refusals as found: a payload URL that names a file which is not
a database (exit 2, one line, no traceback, no SQL, URL masked), and a user MLflow denies READ
on the row's model (exit 3, as the server's trace route answers 403); and the payload row's
scoring caller in the trace (``caller``), also from a payload table older than that column."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner

from mlflow_governance.cli.main import cli
from mlflow_governance.client.rest import RestGovernance
from tests.conftest import unique
from tests.servers import mlflow_server

ADMIN_PASSWORD = "admin-pass-" + os.urandom(4).hex()
SECRET = "Pw" + uuid.uuid4().hex[:10]
RID = "0123456789abcdef0123456789abcdef"

PAYLOAD_COLUMNS = ("seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id VARCHAR(64) NOT NULL UNIQUE, ts BIGINT NOT NULL, "
                   "model VARCHAR(256) NOT NULL, version INTEGER NOT NULL, staging BOOLEAN NOT NULL, "
                   "features TEXT NOT NULL, prediction INTEGER NOT NULL, probability FLOAT NOT NULL, "
                   "replica VARCHAR(128)")


def payload_database(path, model: str, caller: str | None, with_caller_column: bool = True) -> str:
    """A payload database (the sidecar's tables, written here with plain SQL) holding one row of
    ``model`` version 1 as request ``RID``; without the ``caller`` column when asked."""
    from mlflow_governance.sidecar import schema

    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        columns = PAYLOAD_COLUMNS + (", caller VARCHAR(256)" if with_caller_column else "")
        conn.exec_driver_sql(f"CREATE TABLE mlgov_payload ({columns})")
        schema.feedback.create(conn)
        values = {"r": RID, "m": model, "f": json.dumps({"MONTH": 7})}
        if with_caller_column:
            conn.execute(sa.text("INSERT INTO mlgov_payload (request_id, ts, model, version, staging, features, "
                                 "prediction, probability, replica, caller) VALUES (:r, 1780000000000, :m, 1, 0, :f, "
                                 "1, 0.75, 'host:1', :c)"), {**values, "c": caller})
        else:
            conn.execute(sa.text("INSERT INTO mlgov_payload (request_id, ts, model, version, staging, features, "
                                 "prediction, probability, replica) VALUES (:r, 1780000000000, :m, 1, 0, :f, 1, 0.75, "
                                 "'host:1')"), values)
    engine.dispose()
    return url


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output and "SELECT" not in result.output and "[SQL" not in result.output
    return lines[0]


@pytest.mark.parametrize("command", ["trace", "explain"])
def test_a_payload_url_that_is_not_a_database_is_bad_input_in_one_line(command, sqlite_registry, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is a text file, not a SQLite database\n" * 200)
    runner = CliRunner()
    for url in ("sqlite:////etc/passwd", f"sqlite:///{text}"):
        line = one_error_line(runner.invoke(cli, [command, RID, "--payload-url", url], env={"MLGOV_USER": "olivia"}), 2)
        assert "is not a database" in line and url.removeprefix("sqlite:///") in line, line
    # a URL with secrets is named masked in the refusal
    url = f"sqlite:///{text}?password={SECRET}"
    result = runner.invoke(cli, [command, RID, "--payload-url", url], env={"MLGOV_USER": "olivia"})
    assert result.exit_code == 2 and SECRET not in result.output, result.output


@pytest.mark.parametrize("command", ["trace", "explain"])
def test_payload_urls_with_secrets_are_shown_masked(command, sqlite_registry, tmp_path):
    runner = CliRunner()
    for url in (f"postgresql://mona:{SECRET}@127.0.0.1:9/payloads",
                f"postgresql://mona@127.0.0.1:9/payloads?sslmode=disable&password={SECRET}"):
        line = one_error_line(runner.invoke(cli, [command, RID, "--payload-url", url], env={"MLGOV_USER": "olivia"}), 6)
        assert SECRET not in line and "***" in line, line


@pytest.fixture(scope="module")
def governance_server(tmp_path_factory, sqlite_template):
    """A governance server; olivia (ModelOwner) owns a governed model, adam (ModelApprover) is
    denied READ on it with MLflow's permission API."""
    workdir = tmp_path_factory.mktemp("trace-perm")
    shutil.copy(sqlite_template, workdir / "mlflow.db")
    backend = f"sqlite:///{workdir}/mlflow.db"
    env = {"MLGOV_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
           "MLGOV_ADMIN": "admin"}
    with mlflow_server(workdir, backend, "governed-" + backend, app_name="governance", env=env) as url:
        admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
        for user, role in (("olivia", "ModelOwner"), ("adam", "ModelApprover")):
            admin.add_user(user, f"{user}-password-1")
            admin.grant(user, role)
        model = unique("traced")
        RestGovernance(url, "olivia", "olivia-password-1").initiate(model, "flight delay prediction", "high", None)
        r = requests.post(f"{url}/api/3.0/mlflow/users/permissions/grant", auth=("admin", ADMIN_PASSWORD),
                          json={"username": "adam", "resource_type": "registered_model", "resource_id": model,
                                "permission": "DENY"}, timeout=30)
        assert r.status_code == 200, r.text
        yield url, model


def as_user(url: str, user: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": f"{user}-password-1"}


def test_a_user_denied_read_on_the_model_is_refused_with_exit_3(governance_server, tmp_path):
    url, model = governance_server
    payloads = payload_database(tmp_path / "payloads.db", model, "rita")
    for fmt in ("text", "json"):
        result = CliRunner().invoke(cli, ["trace", RID, "--payload-url", payloads, "--format", fmt],
                                    env=as_user(url, "adam"))
        line = one_error_line(result, 3)
        assert model in line and "may not read" in line, line
        assert "rita" not in result.output and "approvals" not in result.output


def test_the_trace_shows_the_scoring_caller(governance_server, tmp_path):
    url, model = governance_server
    runner = CliRunner()
    for name, caller, column, shown in (("new.db", "rita", True, "caller: rita"),
                                        ("anonymous.db", None, True, "caller: (not recorded)"),
                                        ("old.db", None, False, "caller: (not recorded)")):
        payloads = payload_database(tmp_path / name, model, caller, with_caller_column=column)
        result = runner.invoke(cli, ["trace", RID, "--payload-url", payloads], env=as_user(url, "olivia"))
        assert result.exit_code == 0, result.output
        assert f"   {shown}\n" in result.stdout, result.stdout
        result = runner.invoke(cli, ["trace", RID, "--payload-url", payloads, "--format", "json"],
                               env=as_user(url, "olivia"))
        assert result.exit_code == 0, result.output
        (prediction,) = [link for link in json.loads(result.stdout)["links"] if link["name"] == "prediction"]
        assert prediction["data"]["caller"] == caller
