"""The CI/CD promotion path: docs/ci/promote.sh, the script docs/ci/promote.yml runs, run as written
against a governance server on PostgreSQL (artifacts served through it) and real sidecars.

Version 1 of a model is in production, served by a production-mode sidecar. Version 2 (the same
files, logged again through the server) goes through its lifecycle; the script refuses to deploy it
before the owner approved it for deployment (one ``Error:`` line, exit 3, no sidecar started),
then, as the CI's ModelDeployer, starts its sidecar and records the deployment fields from it; as
the CI's ModelMonitor records the monitoring wrapper; and, after the owner's final approval, waits
until the production sidecar serves version 2 and stops the pre-production one. The owner's two
approvals are the test's, as a person's would be.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from contextlib import ExitStack
from pathlib import Path

import requests
import yaml

from mlflow_governance.core import workflow as wf
from tests.conftest import free_port, unique
from tests.test_production_setup import model_files, production_server, publish_version, walk
from tests.test_server_databases import password
from tests.test_sidecar_support import MLGOV, eventually, feature_rows, records, run_sidecar, serve_args, sidecar_env

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "docs" / "ci" / "promote.sh"
WORKFLOW = REPO / "docs" / "ci" / "promote.yml"


def promote(step: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``docs/ci/promote.sh STEP`` as CI runs it: mlgov on the PATH, the step's variables set."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    full.update(env)
    full["PATH"] = str(Path(MLGOV).parent) + os.pathsep + full.get("PATH", "")
    return subprocess.run(["bash", str(SCRIPT), step], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_workflow_runs_the_script_with_the_variables_it_reads():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    trigger = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert trigger["workflow_dispatch"]["inputs"]["step"]["options"] == ["deploy", "productionize", "verify"]
    job = workflow["jobs"]["promote"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert any(r.strip() == 'docs/ci/promote.sh "$PROMOTE_STEP"' for r in runs), runs
    script = SCRIPT.read_text()
    required = {name for line in re.findall(r"^\s*need (.+)$", script, flags=re.M) for name in line.split()}
    assert required == {"MODEL", "VERSION", "MLFLOW_TRACKING_URI", "SIDECAR_URL", "MLGOV_PAYLOAD_URL", "PRODUCTION_URL"}
    # What the script requires, and the credentials mlgov reads, come from the workflow's job.
    missing = (required | {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}) - set(job["env"])
    assert not missing, missing


def test_ci_promotes_only_an_approved_version_and_records_the_running_sidecar(trained_model, winter_flights,
                                                                             tmp_path, pg_template):
    model = unique("ci-delay")
    body = {"dataframe_records": records(feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(2)))}
    state = tmp_path / "ci-state"
    candidate_url = f"http://127.0.0.1:{free_port()}"
    pid_file = state / f"sidecar-{model}-v2.pid"
    with ExitStack() as stack:
        server = stack.enter_context(production_server(tmp_path / "server", pg_template))
        files = model_files(trained_model, tmp_path / "files")
        v1 = publish_version(server, files, model)
        walk(server, model, v1, wf.READY_TO_USE)
        payloads = f"sqlite:///{tmp_path / 'payloads.db'}"
        production = stack.enter_context(run_sidecar(
            tmp_path / "production", sidecar_env(**server.env("mona")), "--model", model, "--payload-url", payloads,
            *serve_args(workers=1, auth=True), auth=("dora", password("dora"))))
        assert production.score(body).json()["version"] == v1

        v2 = publish_version(server, files, model, initiate=False)
        assert v2 == 2
        walk(server, model, v2, wf.MODEL_VALIDATION_COMPLETED)
        ci = {"MODEL": model, "VERSION": str(v2), "SIDECAR_URL": candidate_url, "MLGOV_PAYLOAD_URL": payloads,
              "PRODUCTION_URL": production.url, "PROMOTE_STATE_DIR": str(state), "PROMOTE_WAIT_SECONDS": "120",
              "SIDECAR_SERVE_ARGS": "--workers 1 --threads 2 --usability-cache-seconds 1"}
        deployer, monitor = {**ci, **server.env("dora")}, {**ci, **server.env("mona")}

        def stop_candidate() -> None:
            if pid_file.exists() and alive(pid := int(pid_file.read_text())):
                os.kill(pid, signal.SIGTERM)
        stack.callback(stop_candidate)

        # Not yet approved for deployment: refused in one line, nothing started.
        refused = promote("deploy", deployer, tmp_path)
        assert refused.returncode == 3, (refused.stdout, refused.stderr)
        line = one_error_line(refused)
        assert f"'{wf.MODEL_VALIDATION_COMPLETED}', not '{wf.APPROVED_FOR_DEPLOYMENT}'" in line
        assert not pid_file.exists()
        assert server.api("olivia").status(model, v2)["version"]["stage"] == wf.MODEL_VALIDATION_COMPLETED

        server.api("olivia").transition(model, wf.APPROVE, v2, None, "validation reviewed")
        # Approved for deployment, but the ModelMonitor's credentials are not a deployer's.
        wrong = promote("deploy", monitor, tmp_path)
        assert wrong.returncode == 3 and "mona may not submit" in one_error_line(wrong), wrong.stderr
        assert not pid_file.exists()

        deployed = promote("deploy", deployer, tmp_path)
        assert deployed.returncode == 0, (deployed.stdout, deployed.stderr)
        pid = int(pid_file.read_text())
        assert alive(pid)
        fields = server.api("olivia").status(model, v2)["version"]
        assert fields["stage"] == wf.MODEL_DEPLOYMENT_COMPLETED
        assert fields["fields"]["endpoint"] == candidate_url + "/invocations"
        assert fields["fields"]["deployment_space"] == "production"
        recorded = [r for r in server.api("olivia").audit(model, None) if r["version"] == v2][-1]
        assert recorded["actor"] == "dora" and f"{candidate_url}/status" in recorded["comment"]
        # The pre-production sidecar answers for version 2 only, and says so; production still serves 1.
        staged = requests.post(candidate_url + "/invocations", json=body, timeout=30, auth=("dora", password("dora")))
        assert staged.status_code == 200 and staged.json()["version"] == v2 and staged.json()["staging"] is True
        assert production.score(body).json()["version"] == v1

        # Too early for the monitoring step: the owner has not approved the move to production.
        early = promote("productionize", monitor, tmp_path)
        assert early.returncode == 3 and "moved_to_production" in one_error_line(early)
        server.api("olivia").transition(model, wf.APPROVE, v2, {"moved_to_production": "yes"}, "go to production")
        wrapped = promote("productionize", monitor, tmp_path)
        assert wrapped.returncode == 0, (wrapped.stdout, wrapped.stderr)
        status = server.api("olivia").status(model, v2)["version"]
        assert status["stage"] == wf.PRE_PRODUCTION_REVIEW
        assert status["fields"]["monitoring_url"] == candidate_url + "/status"

        too_soon = promote("verify", deployer, tmp_path)
        assert too_soon.returncode == 3 and wf.READY_TO_USE in one_error_line(too_soon)
        server.api("olivia").transition(model, wf.APPROVE, v2, None, "final approval")
        verified = promote("verify", deployer, tmp_path)
        assert verified.returncode == 0, (verified.stdout, verified.stderr)
        assert f"serves {model} version {v2}" in verified.stdout
        # The pre-production sidecar is stopped; the production sidecar, never restarted, serves 2.
        eventually(lambda: not alive(pid), timeout=30, what="the pre-production sidecar stopped")
        assert not pid_file.exists()
        assert production.proc.poll() is None
        assert [production.score(body).json()["version"] for _ in range(4)] == [v2] * 4
        assert server.api("olivia").status(model, v1)["version"]["stage"] == wf.DECOMMISSIONED
