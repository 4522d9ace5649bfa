"""``mlgov deploy``: the workflow records where the model really runs, read from its sidecar."""

from __future__ import annotations

import subprocess

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from tests.cli_in_process import mlgov as mlgov_in_process
from tests.conftest import acting, free_port
from tests.governance_helpers import fields_for
from tests.test_sidecar_support import copy_registry, run_sidecar, serve_args, sidecar_env


def mlgov(env: dict, user: str, *args: str) -> subprocess.CompletedProcess:
    return mlgov_in_process(*args, env={**env, "MLGOV_USER": user})


def test_deploy_records_the_running_sidecar_and_refuses_one_that_does_not_answer(trained_model, tmp_path,
                                                                                monkeypatch):
    registry = copy_registry(trained_model, tmp_path, "registry.db")
    for key, value in registry.env().items():
        monkeypatch.setenv(key, value)
    client = GovernanceClient()
    model, version = registry.model, registry.version
    while (stage := client.status(model, version)["version"]["stage"]) != wf.APPROVED_FOR_DEPLOYMENT:
        with acting("olivia" if stage in (wf.MODEL_DEVELOPMENT_COMPLETED, wf.MODEL_VALIDATION_COMPLETED) else "victor"):
            action = "approve" if stage != wf.APPROVED_FOR_VALIDATION else "submit"
            client.transition(model, action, version, fields_for(stage, model, version), comment="ok")
    env = sidecar_env(registry.registry_uri, registry.tracking_uri)
    nowhere = f"http://127.0.0.1:{free_port()}"
    refused = mlgov(env, "dora", "deploy", "--model", model, "--version", str(version), "--url", nowhere)
    assert refused.returncode == 3 and f"the sidecar at {nowhere} does not answer" in refused.stderr
    wrong_role = mlgov(env, "mona", "deploy", "--model", model, "--version", str(version), "--url", nowhere)
    assert wrong_role.returncode == 3 and "ModelDeployer role is required" in wrong_role.stderr

    with run_sidecar(tmp_path / "run", {**env, "MLGOV_USER": "dora"}, "--model", model, "--version", str(version),
                     "--staging", *serve_args(workers=1)) as sidecar:
        done = mlgov(env, "dora", "deploy", "--model", model, "--version", str(version), "--url", sidecar.url)
        assert done.returncode == 0, done.stderr
        status = client.status(model, version)["version"]
        assert status["stage"] == wf.MODEL_DEPLOYMENT_COMPLETED
        assert status["fields"]["endpoint"] == sidecar.url + "/invocations"
        assert "staging sidecar" in status["fields"]["deployment_space"]
        with acting("olivia"):
            client.transition(model, "approve", version, {"moved_to_production": "yes"})
        done = mlgov(env, "mona", "deploy", "--model", model, "--version", str(version), "--url", sidecar.url)
        assert done.returncode == 0, done.stderr
        status = client.status(model, version)["version"]
        assert status["stage"] == wf.PRE_PRODUCTION_REVIEW
        assert status["fields"]["wrapper_endpoint"] == sidecar.url + "/invocations"
        assert status["fields"]["monitoring_url"] == sidecar.url + "/status"
        # A sidecar of another model is not this deployment.
        other = mlgov(env, "mona", "deploy", "--model", "someone-else", "--version", "1", "--url", sidecar.url)
        assert other.returncode in (3, 4) and "Traceback" not in other.stderr
    row = client.audit(model)[-1]
    assert row["actor"] == "mona" and f"{sidecar.url}/status" in row["comment"]
