"""The ``mlgov`` command line: contract commands, clear errors, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_governance.cli.main import cli
from mlflow_governance.core import workflow as wf
from tests.conftest import ROLE_USER, acting, unique

MLGOV = str(Path(sys.executable).parent / "mlgov")


def run(*args: str, user: str | None = None):
    with acting(user):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_walk_through_the_cli(registry, tmp_path):
    model = unique("cli")
    r = run("initiate", model, "--use-case", "delay prediction", "--risk-tier", "high", user="olivia")
    assert r.exit_code == 0, r.output
    inventory_id = r.output.strip()
    assert inventory_id.startswith("MOD_")
    r = run("tasks", "--role", wf.MODEL_APPROVER)
    assert model in r.output and wf.CANDIDACY_REVIEW in r.output
    r = run("transition", model, "approve", user="adam")
    assert r.exit_code == 0 and "Data Acquisition (waiting for ModelDataEngineer)" in r.output
    r = run("transition", model, "submit", "--set", "training_data_asset=file:///x.parquet",
            "--set", "training_data_quality_flag=acceptable", user="erin")
    assert r.exit_code == 0, r.output
    r = run("status", model, "--json")
    status = json.loads(r.output)
    assert status["inventory_id"] == inventory_id
    assert status["stage"] == wf.DATA_ACQUISITION_COMPLETED
    assert status["fields"]["training_data_quality_flag"] == "acceptable"
    r = run("tasks", user="olivia")
    assert model in r.output
    r = run("factsheet", model)
    assert f"# Fact sheet: {model} ({inventory_id})" in r.output
    assert "| erin | ModelDataEngineer | - | submit | Data Acquisition -> Data Acquisition Completed |" in r.output
    out = tmp_path / "sheet.html"
    r = run("factsheet", model, "--format", "html", "--output", str(out))
    assert r.exit_code == 0 and "<table>" in out.read_text()
    r = run("audit", "show", "--model", model)
    assert "refused" not in r.output and "submit" in r.output
    r = run("audit", "verify")
    assert r.exit_code == 0 and "intact" in r.output


def test_errors_are_messages_with_exit_codes(sqlite_registry):
    model = unique("err")
    r = run("initiate", model, "--use-case", "x", user="adam")
    assert r.exit_code == 3 and r.output.startswith("Error: Governance:") and "ModelOwner" in r.output
    r = run("status", "no-such-model")
    assert r.exit_code == 4 and "not found" in r.output
    run("initiate", model, "--use-case", "x", user="olivia")
    r = run("transition", model, "approve", "--set", "oops", user="adam")
    assert r.exit_code == 2 and "FIELD=VALUE" in r.output
    r = run("transition", model, "launch", user="adam")
    assert r.exit_code == 2 and "launch" in r.output
    r = run("transition", model, "submit", user="adam")
    assert r.exit_code == 3 and "not possible" in r.output
    r = run("roles", "grant", "bob", wf.MODEL_OWNER, user="olivia")
    assert r.exit_code == 3 and "only the admin" in r.output
    r = run("roles", "grant", "bob", wf.MODEL_OWNER, wf.MODEL_MONITOR, user="admin")
    assert r.exit_code == 0 and r.output.count("granted") == 2
    r = run("roles", "list", "--json", user="olivia")  # the admin's, locally as on the server
    assert r.exit_code == 3 and "only the admin may list the role table" in r.output
    r = run("roles", "list", "--json", user="admin")
    assert {"username": "bob", "role": wf.MODEL_MONITOR} in [
        {"username": x["username"], "role": x["role"]} for x in json.loads(r.output)
    ]
    r = run("roles", "revoke", "bob", wf.MODEL_MONITOR, user="admin")
    assert r.exit_code == 0 and "revoked" in r.output


def test_registry_must_be_governed(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path}/plain.db")
    r = run("status", "x")
    assert r.exit_code == 2 and "is not governed" in r.output


def test_subprocess_audit_verify_fails_on_tampering(sqlite_registry):
    """The installed console script: exit 0 on a sound chain, 1 naming the row otherwise."""
    env = {**os.environ, "MLGOV_USER": ROLE_USER[wf.MODEL_OWNER]}
    model = unique("sub")
    p = subprocess.run([MLGOV, "initiate", model, "--use-case", "x"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert subprocess.run([MLGOV, "audit", "verify"], env=env, capture_output=True).returncode == 0
    import sqlalchemy as sa

    eng = sa.create_engine(sqlite_registry.removeprefix("governed-"))
    with eng.begin() as conn:
        seq = conn.execute(sa.text("SELECT max(seq) FROM mlgov_audit WHERE action = 'initiate'")).scalar()
        conn.execute(sa.text("UPDATE mlgov_audit SET actor = 'mallory' WHERE seq = :s"), {"s": seq})
    eng.dispose()
    p = subprocess.run([MLGOV, "audit", "verify"], env=env, capture_output=True, text=True)
    assert p.returncode == 1
    assert f"row {seq}" in p.stderr and "edited" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args", [["transition", "m", "approve"], ["tasks"]])
def test_no_registry_configured_is_a_clear_error(args, tmp_path):
    p = subprocess.run([MLGOV, *args], env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and "Error:" in p.stderr
    assert not any(tmp_path.iterdir()), "a refused command must not create a database"
