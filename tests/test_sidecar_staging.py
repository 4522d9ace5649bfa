"""Staging mode (user acceptance testing of a version under validation) and what ``mlgov serve``
refuses to start: no servable version (exit 3), an unknown model (4), bad options (2)."""

from __future__ import annotations

import subprocess

import pytest
import sqlalchemy as sa

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.sidecar import schema
from tests.conftest import acting, free_port
from tests.plugins.training_fixtures import _env
from tests.test_sidecar_support import (
    MLGOV,
    copy_registry,
    feature_rows,
    records,
    run_sidecar,
    serve_args,
    sidecar_env,
    stop_sidecar,
)


@pytest.fixture(scope="module")
def validating(trained_model, tmp_path_factory):
    """A registry copy whose trained version the owner approved for validation."""
    work = tmp_path_factory.mktemp("staging")
    registry = copy_registry(trained_model, work, "registry.db")
    with _env(MLGOV_ADMIN="admin"), acting("olivia"):
        GovernanceClient(registry.registry_uri).transition(registry.model, wf.APPROVE, registry.version,
                                                           comment="ready for validation")
        stage = GovernanceClient(registry.registry_uri).status(registry.model, registry.version)["version"]["stage"]
    assert stage == wf.APPROVED_FOR_VALIDATION
    return work, registry


def test_staging_serves_a_version_under_validation_and_says_so(validating, winter_flights):
    work, registry = validating
    env = sidecar_env(registry.registry_uri, registry.tracking_uri, MLGOV_USER="victor")
    rows = feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(5))
    with run_sidecar(work / "run", env, "--model", registry.model, "--version", str(registry.version), "--staging",
                     *serve_args(workers=1)) as sidecar:
        status = sidecar.get("/status").json()
        assert status["mode"] == "staging" and status["staging"] is True and status["alias"] is None
        assert status["stage"] == wf.APPROVED_FOR_VALIDATION and status["serving"] is True
        r = sidecar.score({"dataframe_records": records(rows)})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["staging"] is True and out["version"] == registry.version and len(out["predictions"]) == 5
        # SIGTERM right after scoring: a clean stop (exit 0) that flushes the rows still queued
        assert stop_sidecar(sidecar.proc) == 0
    engine = sa.create_engine(f"sqlite:///{work / 'run' / 'mlgov-payloads.db'}")
    p = schema.payload
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.select(p.c.request_id, p.c.staging).where(
                p.c.request_id.in_(out["request_ids"]))).all()
    finally:
        engine.dispose()
    assert len(found) == 5 and all(staging for _, staging in found)


def test_mlgov_serve_refuses_to_start_without_a_servable_version(validating, production_model, tmp_path):
    """Real processes (exit 3 and one line on stderr): nothing in production, and a staging
    sidecar asked for the Ready to Use version."""
    _, registry = validating
    cases = {
        "no production version": (registry, ["--model", registry.model], "has no production version"),
        "staging a Ready to Use version": (production_model, ["--model", production_model.model, "--version",
                                                              str(production_model.version), "--staging"],
                                           "Ready to Use"),
    }
    procs = {}
    for name, (reg, args, _) in cases.items():
        env = sidecar_env(reg.registry_uri, reg.tracking_uri, MLGOV_USER="dora")
        cmd = [MLGOV, "serve", "--host", "127.0.0.1", "--port", str(free_port()), *serve_args(*args)]
        procs[name] = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    for name, (_, _, text) in cases.items():
        out, err = procs[name].communicate(timeout=120)
        assert procs[name].returncode == 3, (name, out, err)
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], (name, err)


@pytest.mark.parametrize(("args", "code", "text"), [
    (["--model", "no-such-model"], 4, "does not exist"),
    (["--version", "{version}"], 3, "not in production"),
    (["--staging"], 2, "--staging needs --version"),
    (["--alias", "champion"], 2, "production"),
    (["--version", "1", "--alias", "production"], 2, "not both"),
    (["--port", "0"], 2, "0"),
])
def test_mlgov_serve_exit_codes(validating, monkeypatch, args, code, text):
    """In process (the refusals happen before gunicorn starts): 4 unknown model, 3 refused, 2 bad options."""
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    _, registry = validating
    for key, value in registry.env().items():
        monkeypatch.setenv(key, value)
    args = [a.format(version=registry.version) for a in args]
    if "--model" not in args:
        args = ["--model", registry.model, *args]
    result = CliRunner().invoke(cli, ["serve", *serve_args(*args)])
    assert result.exit_code == code, result.output
    assert text in result.output and "Traceback" not in result.output
