"""The ``pipeline`` entry point for real: ``mlflow run <repo> -e pipeline --env-manager local``.

A model on a private governed SQLite registry is taken through acquisition, development and
validation by repeated pipeline runs, each step a real ``mlflow run`` of its stage entry point as
its own user, with the owner's approvals made by olivia in between (the pipeline never approves).
The sources are the session's seeded SQLite and PostgreSQL databases. The decision of what is due
(`pipeline.next_move`) is also checked on real registry states the long run does not reach.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from mlflow import MlflowClient

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.orchestration import pipeline
from mlflow_governance.sidecar import schema
from tests.conftest import acting, unique
from tests.governance_helpers import new_version, step, walk_model_to, walk_version_to

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# Thresholds a quickly trained model meets on a later month (the validation's own rules are tested elsewhere).
LENIENT = {
    "quality": {"min_labels": 100, "thresholds": {"roc_auc": 0.5}},
    "fairness": {"threshold": 0.05, "min_group_size": 100,
                 "attributes": [{"feature": "ORIGIN_AIRPORT", "monitored": ["EWR"], "reference": ["JFK"]}]},
    "drift": {"max_share_drifted": 1.0},
    "estimated_accuracy": {"max_drop": 1.0},
}


def pipeline_command(*params: str, wait_seconds: int = 0) -> list[str]:
    args = [str(VENV_BIN / "mlflow"), "run", str(REPO), "-e", "pipeline", "--env-manager", "local",
            "--experiment-name", "pipeline", "-P", f"wait_seconds={wait_seconds}"]
    for p in params:
        args += ["-P", p]
    return args


def pipeline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLGOV_USER"}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    return env


def run_pipeline(*params: str) -> subprocess.CompletedProcess:
    return subprocess.run(pipeline_command(*params), env=pipeline_env(), capture_output=True, text=True, timeout=600)


def run_script(*params: str) -> subprocess.CompletedProcess:
    """projects/pipeline.py without `mlflow run` around it, to see its own exit code."""
    args = [sys.executable, str(REPO / "projects" / "pipeline.py")]
    for p in params:
        key, _, value = p.partition("=")
        args.append(f"--{key.replace('_', '-')}={value}")
    return subprocess.run(args, env=pipeline_env(), capture_output=True, text=True, timeout=300)


def lines(proc) -> list[str]:
    """The pipeline's own lines (the sub-runs' output is interleaved on the same streams)."""
    return [line.removeprefix(pipeline.PREFIX) for line in proc.stdout.splitlines()
            if line.startswith(pipeline.PREFIX)]


def next_own_line(out: queue.Queue, timeout: float = 300) -> str:
    """The pipeline's next own line from a running pipeline's stdout."""
    deadline = time.monotonic() + timeout
    while True:
        line = out.get(timeout=max(deadline - time.monotonic(), 0.1))
        if line.startswith(pipeline.PREFIX):
            return line.removeprefix(pipeline.PREFIX)


def project_runs(entry: str) -> list:
    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    return [r for r in client.search_runs(ids) if r.data.tags.get("mlflow.project.entryPoint") == entry]


def performed(client: GovernanceClient, name: str, from_stage: str) -> list[tuple[str, str, str]]:
    return [(r["actor"], r["action"], r["outcome"]) for r in client.audit(name) if r["from_stage"] == from_stage]


@pytest.fixture
def validation_files(tmp_path) -> tuple[Path, Path]:
    """3,000 March flights (months the training never sees), and lenient monitor thresholds."""
    from mlflow_governance.airline.flights import source_tables

    flights, airports = source_tables([3])
    data = tmp_path / "march.parquet"
    flights.merge(airports, on="FLIGHT_ID").sample(3000, random_state=3).to_parquet(data, index=False)
    config = tmp_path / "monitors.yaml"
    config.write_text(yaml.safe_dump(LENIENT))
    return data, config


def test_pipeline_runs_each_due_step_as_its_user_and_stops_for_people(
    sqlite_registry, acquisition_sources, validation_files, tmp_path
):
    name = unique("pipeline")
    client = GovernanceClient()
    with acting("olivia"):
        client.initiate(name, use_case="delay prediction")
    with acting("adam"):
        client.transition(name, "approve")
    data, config = validation_files
    payloads = f"sqlite:///{tmp_path / 'payloads.db'}"
    schema.create_all(sa.create_engine(payloads))
    common = [f"model={name}", f"flights_url={acquisition_sources.sqlite_url}",
              f"airports_url={acquisition_sources.pg_url}", "months=1", "quick=true",
              f"validation_data={data}", f"validation_config={config}",
              "data_engineer=erin", "validator=victor"]

    # Run 1: acquisition as erin, then the owner's review is due.
    proc = run_pipeline(*common, "developer=devi")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert lines(proc)[0].startswith(f"acquire as erin: {name} Data Acquisition -> Data Acquisition Completed (run ")
    assert lines(proc)[1:] == [
        f"waiting for the ModelOwner: {name} is in Data Acquisition Completed (the ModelOwner approves or rejects it)",
        f"run the pipeline again after the ModelOwner approves or rejects {name}",
    ]
    assert client.status(name)["stage"] == wf.DATA_ACQUISITION_COMPLETED
    assert performed(client, name, wf.DATA_ACQUISITION) == [("erin", "submit", "allowed")]
    (acquired,) = project_runs("acquire")
    assert acquired.info.status == "FINISHED" and acquired.data.tags["mlflow.runName"] == "acquire (erin)"
    pipeline_run = MlflowClient().get_run(acquired.data.tags["mlflow.parentRunId"])
    assert pipeline_run.data.tags["mlflow.project.entryPoint"] == "pipeline"

    # Nothing is due for the pipeline until olivia approves: run again, it only waits.
    again = run_script(*common, "developer=devi")
    assert again.returncode == 0 and lines(again)[0].startswith("waiting for the ModelOwner: "), again.stderr
    assert len(project_runs("acquire")) == 1
    with acting("olivia"):
        client.transition(name, "approve", comment="profile reviewed")

    # A developer without the role is refused before any sub-run starts (and nothing is written).
    # (`mlflow run` exits 1 for any failed run; the entry point's own code is 3, as the stages'.)
    refused = run_pipeline(*common, "developer=erin")
    assert refused.returncode == 1, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: Governance: the train step as erin is refused before it starts: 'erin' may not "
                      "submit in stage 'Approved for Development': the ModelDeveloper role is required "
                      "(held: ModelDataEngineer)"], refused.stderr[-2000:]
    direct = run_script(f"model={name}", "developer=erin")
    assert direct.returncode == 3 and direct.stderr == errors[0] + "\n", direct.stderr
    assert project_runs("train") == [] and not client.status(name)["versions"]
    assert performed(client, name, wf.APPROVED_FOR_DEVELOPMENT) == []
    assert [r.info.status for r in project_runs("pipeline")][:1] == ["FAILED"]
    # ... and so is a step whose user is not given, naming the parameter (exit 2).
    missing = run_script(*common)
    assert missing.returncode == 2 and missing.stderr == (
        f"Error: the train step is due ({name} in Approved for Development) but no developer is given: "
        "pass -P developer=USER, a ModelDeveloper\n"), missing.stderr
    assert project_runs("train") == []

    # Run 2: development as devi; the owner's approval of version 1 is due.
    proc = run_pipeline(*common, "developer=devi")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert lines(proc)[0].startswith(
        f"train as devi: {name} version 1 Approved for Development -> Model Development Completed (run ")
    assert lines(proc)[1] == (f"waiting for the ModelOwner: {name} version 1 is in Model Development Completed "
                              "(the ModelOwner approves or rejects it)")
    status = client.status(name, 1)["version"]
    assert status["developer"] == "devi" and status["stage"] == wf.MODEL_DEVELOPMENT_COMPLETED
    assert len(project_runs("acquire")) == 1 and len(project_runs("train")) == 1
    with acting("olivia"):
        client.transition(name, "approve", 1, comment="ready for validation")

    # Run 3: validation as victor; stops for the owner.
    proc = run_pipeline(*common, "developer=devi")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert lines(proc)[0].startswith(
        f"validate as victor: {name} version 1 Approved for Validation -> Model Validation Completed (run ")
    assert lines(proc)[-1] == f"run the pipeline again after the ModelOwner approves or rejects {name} version 1"
    assert performed(client, name, wf.APPROVED_FOR_VALIDATION)[-1] == ("victor", "submit", "allowed")
    assert client.status(name, 1)["version"]["fields"]["validation_dataset"] == str(data)

    # Run 4 waits for people (wait_seconds) while they walk version 1 to production; then the
    # monitor evaluates the (still empty) payload table as mona, and nothing is left to do.
    waiting = subprocess.Popen(
        pipeline_command(*common, "developer=devi", "monitor=mona", f"payload_url={payloads}", wait_seconds=300),
        env=pipeline_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [out.put(line.rstrip("\n")) for line in waiting.stdout], daemon=True).start()
    try:
        own = [next_own_line(out)]
        assert own[0] == (f"waiting for the ModelOwner: {name} version 1 is in Model Validation Completed "
                          "(the ModelOwner approves or rejects it)")
        while client.status(name, 1)["version"]["stage"] != wf.READY_TO_USE:
            step(client, name, 1)
        while not own[-1].startswith("nothing to do"):
            own.append(next_own_line(out))
        err = waiting.stderr.read()
        waiting.wait(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err[-3000:]
    assert own[0] == (f"waiting for the ModelOwner: {name} version 1 is in Model Validation Completed "
                      "(the ModelOwner approves or rejects it)")
    assert own[-2].startswith(f"monitor as mona: {name} version 1 evaluated, Ready to Use, usability accept (run ")
    assert own[-1] == (f"nothing to do: {name} version 1 is Ready to Use (usability accept) and no version is "
                       "in flight")
    assert not any(line.startswith("run the pipeline again") for line in own)
    (monitored,) = project_runs("monitor")
    assert monitored.info.status == "FINISHED" and monitored.data.tags["mlflow.runName"] == "monitor (mona)"
    # Every approval in the trail is a person's, none the pipeline's users'.
    approvals = {r["actor"] for r in client.audit(name) if r["action"] == "approve"}
    assert approvals == {"adam", "olivia"}


def test_what_is_due_on_states_the_long_run_does_not_reach(sqlite_registry, tmp_path):
    client = GovernanceClient()
    name = unique("due")
    walk_model_to(client, name, wf.APPROVED_FOR_DEVELOPMENT)
    assert pipeline.next_move(client.status(name)) == pipeline.Due(pipeline.TRAIN)

    # A version sent back by the owner waits for its developer; no new version is trained.
    version = walk_version_to(client, name, wf.MODEL_DEVELOPMENT_COMPLETED, tmp_path, initiate_model=False)
    with acting("olivia"):
        client.transition(name, "reject", version, comment="retrain with February")
    assert pipeline.next_move(client.status(name)) == pipeline.Wait(
        wf.MODEL_DEVELOPER, wf.APPROVED_FOR_DEVELOPMENT, version, "submits")
    # Once that version is decommissioned, training is due again.
    with acting("olivia"):
        client.transition(name, "decommission", version, comment="superseded")
    assert pipeline.next_move(client.status(name)) == pipeline.Due(pipeline.TRAIN)

    # A deployment waits for the ModelDeployer; a production version with nothing in flight is done,
    # and its monitoring is due only with a payload database and while usability is accept.
    second = new_version(name, tmp_path)
    while client.status(name, second)["version"]["stage"] != wf.APPROVED_FOR_DEPLOYMENT:
        step(client, name, second)
    move = pipeline.next_move(client.status(name))
    assert move == pipeline.Wait(wf.MODEL_DEPLOYER, wf.APPROVED_FOR_DEPLOYMENT, second, "submits")
    while client.status(name, second)["version"]["stage"] != wf.READY_TO_USE:
        step(client, name, second)
    status = client.status(name)
    assert isinstance(pipeline.next_move(status), pipeline.Finished)
    assert pipeline.monitor_due(status, "") is None and pipeline.monitor_due(status, "sqlite:///p.db") == second
    with acting("mona"):
        client.transition(name, "reject", second, comment="drift")
    assert pipeline.monitor_due(client.status(name), "sqlite:///p.db") is None

    # The model decommissioned: nothing is left.
    with acting("olivia"):
        client.transition(name, "decommission", comment="retired")
    assert pipeline.next_move(client.status(name)) == pipeline.Finished(f"{name} is Decommissioned: nothing is left to run")


def test_a_step_that_does_not_move_the_stage_is_an_error(sqlite_registry, tmp_path):
    """A sub-run that exits 0 without the stage moving stops the pipeline (no loop)."""
    name = unique("stuck")
    walk_model_to(GovernanceClient(), name, wf.DATA_ACQUISITION)
    launched = []

    def launcher(project, entry, parameters, run_name):
        launched.append((entry, os.environ.get("MLGOV_USER"), parameters["model"]))
        return "r1", 0

    params = pipeline.PipelineParams(name, flights_url="sqlite:///f.db", airports_url="sqlite:///a.db",
                                     users={"data_engineer": "erin"})
    with acting("olivia"):
        with pytest.raises(pipeline.StepFailed) as failed:
            pipeline.run_pipeline(params, str(REPO), launcher=launcher, echo=lambda line: None)
        assert os.environ["MLGOV_USER"] == "olivia"  # the step's user was set for its sub-run only
    assert failed.value.exit_code == 1 and "did not move" in str(failed.value)
    assert launched == [("acquire", "erin", name)]


def test_against_a_governance_server_the_pipeline_acts_only_as_the_signed_in_user(acquisition_sources, tmp_path,
                                                                                   sqlite_template):
    """Several people: refused in one line (exit 3) before any sub-run; one person: their steps run."""
    from mlflow_governance.client.rest import RestGovernance
    from tests.servers import mlflow_server

    admin_password = "admin-" + os.urandom(8).hex()
    secrets = {user: f"{user}-" + os.urandom(8).hex() for user in ("olivia", "adam", "erin")}
    server_env = {"MLGOV_ADMIN_PASSWORD": admin_password, "MLGOV_ADMIN": "admin",
                  "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex()}
    shutil.copy(sqlite_template, tmp_path / "server.db")  # already migrated: the server starts sooner
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    with mlflow_server(tmp_path, backend, "governed-" + backend, app_name="governance", env=server_env) as url:
        admin = RestGovernance(url, "admin", admin_password)
        for user, role in (("olivia", wf.MODEL_OWNER), ("adam", wf.MODEL_APPROVER), ("erin", wf.MODEL_DATA_ENGINEER)):
            admin.add_user(user, secrets[user])
            admin.grant(user, role)
        name = unique("remote")
        RestGovernance(url, "olivia", secrets["olivia"]).initiate(name, "delay prediction", "high", None)
        RestGovernance(url, "adam", secrets["adam"]).transition(name, "approve", None, {}, None)

        env = {k: v for k, v in pipeline_env().items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
        env.update(MLFLOW_TRACKING_URI=url, MLFLOW_TRACKING_USERNAME="erin", MLFLOW_TRACKING_PASSWORD=secrets["erin"],
                   MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
        several = subprocess.run([sys.executable, str(REPO / "projects" / "pipeline.py"), f"--model={name}",
                                  "--data-engineer=erin", "--developer=devi"],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert several.returncode == 3, several.stderr
        assert several.stderr == (
            f"Error: against a governance server ({url}) each person signs in with their own credentials, so the "
            "pipeline cannot act as devi, erin: run the stage entry points (mlflow run . -e acquire / train / "
            "validate / monitor) as each person, or give the pipeline only the steps of the user whose "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are set\n")

        common = [f"model={name}", f"flights_url={acquisition_sources.sqlite_url}",
                  f"airports_url={acquisition_sources.pg_url}", "months=1"]
        alone = subprocess.run(pipeline_command(*common), env=env, capture_output=True, text=True, timeout=600)
        assert alone.returncode == 0, alone.stderr[-3000:]
        assert lines(alone)[0].startswith(f"acquire as erin: {name} Data Acquisition -> Data Acquisition Completed")
        assert lines(alone)[1].startswith("waiting for the ModelOwner: ")
        owner = RestGovernance(url, "olivia", secrets["olivia"])
        assert [(r["actor"], r["action"]) for r in owner.audit(name, None) if r["from_stage"] == wf.DATA_ACQUISITION] \
            == [("erin", "submit")]


@pytest.mark.parametrize("params, message", [
    (("model=m", "quick=maybe"), "quick must be true or false, not 'maybe'"),
    (("model=m", "wait_seconds=soon"), "wait_seconds must be a number of seconds, 0 or more, not 'soon'"),
    (("model= ",), "model must not be empty"),
])
def test_bad_parameters_are_one_line(params, message, sqlite_registry):
    proc = run_script(*params)
    assert proc.returncode == 2 and proc.stderr == f"Error: {message}\n", proc.stderr


def test_conda_env_installs_this_project_on_a_python_it_supports():
    """`mlflow run` without --env-manager builds conda.yaml: Python, pip and this checkout (`-e .`)."""
    import re

    from packaging.specifiers import SpecifierSet

    project = yaml.safe_load((REPO / "MLproject").read_text())
    env = yaml.safe_load((REPO / project["conda_env"]).read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    requires = re.search(r'python_requires="([^"]+)"', (REPO / "setup.py").read_text()).group(1)
    assert SpecifierSet(requires).contains(python.split("=", 1)[1] + ".0")
    assert "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    # conda runs pip from the file's directory: `-e .` is the project whose setup.py sits beside it
    assert pip == ["-e ."] and (REPO / project["conda_env"]).parent == REPO
