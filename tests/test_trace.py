"""`mlgov trace` and ``GET .../trace``: a prediction served by a real sidecar, followed back to the
people, the evidence and the data, each link checked against what the test knows on its own.

The registry is a copy of the one `mlgov demo` leaves (real acquisition from the seeded source
databases, real training, the validator's real validation, every approval by its role). A
sidecar serves version 1; then a version 2 is promoted (version 1 is decommissioned) and the
trace of the earlier request still leads to version 1 and its approvals.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.core import workflow as wf
from mlflow_governance.evidence.trace import ClientSources, TraceError, trace
from tests.conftest import free_port
from tests.servers import mlflow_server
from tests.test_governance_server import ADMIN_PASSWORD, server_env
from tests.test_sidecar_support import MLGOV, feature_rows, records, run_sidecar, serve_args, sidecar_env

MODEL = "airline-delay"


@pytest.fixture(scope="module")
def served(demo_run, tmp_path_factory, winter_flights):
    """(registry env, payload URL, request ids served by version 1, then by version 2).

    The demo served version 1 (winter flights, then July flights until its drift monitor refused),
    decommissioned it and promoted the imported version 2; its payload table holds those rows. A
    copy of its registry and payload database is served here once more (version 2 now), so the
    probability of a version 2 answer is known from the HTTP answer itself."""
    assert demo_run.returncode == 0, demo_run.stderr[-2000:]
    import sqlalchemy as sa

    work = tmp_path_factory.mktemp("trace")
    db, payloads = work / "mlflow.db", work / "payloads.db"
    shutil.copy(demo_run.db, db)
    shutil.copy(demo_run.workdir / "serving" / "payloads.db", payloads)
    payload_url = f"sqlite:///{payloads}"
    engine = sa.create_engine(payload_url)
    try:
        with engine.connect() as conn:
            v1_ids = list(conn.execute(sa.text("SELECT request_id FROM mlgov_payload WHERE version = 1 "
                                               "ORDER BY seq LIMIT 3")).scalars())
    finally:
        engine.dispose()
    assert len(v1_ids) == 3
    registry = {"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MLFLOW_REGISTRY_URI": f"governed-sqlite:///{db}"}
    env = sidecar_env(registry["MLFLOW_REGISTRY_URI"], registry["MLFLOW_TRACKING_URI"], MLGOV_USER="mona")
    body = {"dataframe_records": records(feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(3)))}
    with run_sidecar(work / "run", env, "--model", MODEL, "--payload-url", payload_url, *serve_args()) as sidecar:
        later = sidecar.score(body)
        assert later.status_code == 200 and later.json()["version"] == 2, later.text
    return {"registry": registry, "payload_url": payload_url, "v1_ids": v1_ids, "v2_ids": later.json()["request_ids"],
            "v2": 2, "probability": later.json()["probabilities"][0], "work": work}


def latest_request(served, version: int) -> str:
    """The request id of the newest row ``version`` answered (read straight from the payload table)."""
    import sqlalchemy as sa

    engine = sa.create_engine(served["payload_url"])
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT request_id FROM mlgov_payload WHERE version = :v ORDER BY seq DESC "
                                        "LIMIT 1"), {"v": version}).scalar_one()
    finally:
        engine.dispose()


def rows_of(served, version: int) -> int:
    """How many payload rows ``version`` answered (read straight from the payload table)."""
    import sqlalchemy as sa

    engine = sa.create_engine(served["payload_url"])
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM mlgov_payload WHERE version = :v"),
                                {"v": version}).scalar_one()
    finally:
        engine.dispose()


def links_of(result):
    return {link["name"]: link for link in result["links"]}


def test_a_prediction_by_a_later_decommissioned_version_is_traced_to_its_people_evidence_and_data(
        served, demo_run, monkeypatch):
    for key, value in served["registry"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLGOV_ADMIN", "admin")
    request_id = served["v1_ids"][0]
    result = trace(request_id, served["payload_url"], ClientSources())
    links = links_of(result)
    assert all(link["found"] for link in links.values()), [n for n, v in links.items() if not v["found"]]

    prediction = links["prediction"]["data"]
    assert prediction["version"] == 1 and prediction["staging"] is False
    assert prediction["features"]["MONTH"] in (1, 2, 12) and prediction["prediction"] in (0, 1)
    assert prediction["replica"] and "pid" in prediction["replica"]

    version = links["model version"]["data"]
    assert version["stage_now"] == wf.DECOMMISSIONED  # stopped by its drift monitor, retired by its owner since
    assert version["alias_at_prediction"] == 1 and version["served_the_alias"] is True
    history = [(h["version"], h["event"]) for h in version["alias_history"]]
    assert history[0] == (1, "bound") and sorted(history[1:]) == sorted([(1, "released"), (served["v2"], "bound")])

    # Approvals: the demo's cast, each step by the role the lifecycle table names for it.
    steps = links["approvals"]["data"]["steps"]
    assert steps[0]["action"] == wf.INITIATE and steps[0]["actor"] == "olivia"
    assert steps[-1]["to"] == wf.READY_TO_USE and steps[-1]["version"] == 1 and steps[-1]["actor"] == "olivia"
    for s in steps[1:]:
        scope = wf.VERSION_SCOPE if s["version"] is not None else wf.MODEL_SCOPE
        assert wf.find_transition(s["from"], s["action"], scope).role == s["role"], s
    cast = {user for user, role, what in re.findall(r"^\s*\d+\. (\w+)\s+(\w+)\s+(.*)$", demo_run.stdout, flags=re.M)
            if role != "admin"}
    assert {s["actor"] for s in steps} == cast == {"olivia", "adam", "erin", "devi", "victor", "dora", "mona"}
    assert links["approvals"]["data"]["chain"]["ok"] is True

    # Validation: the run the demo printed.
    printed = re.search(r"report runs:/(\w+)/validation/report\.html", demo_run.stdout).group(1)
    validation = links["validation"]["data"]
    assert validation["run_id"] == printed and validation["submitted_by"] == "victor"
    assert validation["verdict"] in ("pass", "override") and "quality.roc_auc" in validation["figures"]

    # Development: the model version's run, which trained on the acquired dataset.
    development = links["development run"]["data"]
    assert development["run_id"] == mlflow.MlflowClient().get_model_version(MODEL, "1").run_id
    assert development["best_candidate"] and development["metrics"]

    # The training data: MLflow's own digest of the parquet file acquisition wrote.
    dataset = links["training dataset"]["data"]
    expected = mlflow.data.from_pandas(pd.read_parquet(demo_run.workdir / "training.parquet")).digest
    assert dataset["digest"] == expected and dataset["development_used_this_dataset"] is True
    assert dataset["quality_flag"] == "acceptable" and dataset["joined_rows"] > 0
    assert dataset["sources"]["flights"]["url"].startswith(("sqlite", "postgresql"))
    assert dataset["sources"]["flights"]["tables"] and dataset["months"]

    monitoring = links["monitoring"]["data"]
    assert monitoring["usability_at_prediction"] == wf.USABILITY_ACCEPT
    recorded = GovernanceClient().status(MODEL, 1)["version"]["monitors"]["digest"]
    assert recorded and monitoring["config_in_force"]["digest"] == recorded
    assert result["healthy_when_it_answered"] is True

    later = trace(served["v2_ids"][0], served["payload_url"], ClientSources())
    assert later["version"] == served["v2"]
    assert links_of(later)["model version"]["data"]["alias_at_prediction"] == served["v2"]
    assert links_of(later)["prediction"]["data"]["probability"] == pytest.approx(served["probability"])
    # Version 2 came from outside: its development run is the import's, on the outside team's data.
    assert links_of(later)["development run"]["data"]["run_id"] == mlflow.MlflowClient().get_model_version(
        MODEL, "2").run_id


def test_mlgov_trace_formats_and_errors(served, tmp_path, monkeypatch):
    """The installed ``mlgov`` as a process for the JSON answer and the unreachable database (a
    driver's error must not become a traceback); the other formats and refusals in-process
    (click's runner: the same command, exit codes and stderr, without a process start each)."""
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    env = {**sidecar_env(served["registry"]["MLFLOW_REGISTRY_URI"], served["registry"]["MLFLOW_TRACKING_URI"]),
           "MLGOV_USER": "olivia"}

    def installed(*args):
        return subprocess.run([MLGOV, "trace", *args], env=env, capture_output=True, text=True, cwd=tmp_path,
                              timeout=300)

    def in_process(*args):
        result = CliRunner().invoke(cli, ["trace", *args], env={k: env[k] for k in (
            "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_URI", "MLGOV_USER")})
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    monkeypatch.chdir(tmp_path)
    rid = served["v1_ids"][1]
    p = installed(rid, "--payload-url", served["payload_url"], "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["request_id"] == rid
    p = in_process(rid, "--payload-url", served["payload_url"])
    assert p.returncode == 0 and "== approvals [found]" in p.stdout and "healthy when it answered: yes" in p.stdout
    page = tmp_path / "trace.html"
    p = in_process(rid, "--payload-url", served["payload_url"], "--format", "html", "--output", str(page))
    assert p.returncode == 0 and "<h1>Request " in page.read_text()
    p = in_process(rid, "--payload-url", served["payload_url"], "--format", "html", "--output", str(page))
    assert p.returncode == 2 and "already exists" in p.stderr  # never replaced silently
    cases = [
        (installed, (rid, "--payload-url", f"postgresql://nobody:secret@127.0.0.1:{free_port()}/payloads"), 6,
         "is not reachable"),
        (in_process, ("not-an-id", "--payload-url", served["payload_url"]), 2, "is not a request id"),
        (in_process, ("0" * 32, "--payload-url", served["payload_url"]), 4, "no scored row with request id"),
        (in_process, (rid, "--payload-url", "not a url"), 2, "is not a database URL"),
        (in_process, (rid, "--payload-url", f"sqlite:///{tmp_path / 'typo.db'}"), 6, "does not exist"),
    ]
    for run, args, code, text in cases:
        p = run(*args)
        assert p.returncode == code and text in p.stderr, (args, p.returncode, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr and "secret" not in p.stderr
    assert not (tmp_path / "typo.db").exists()  # a mistyped path is never created


def test_the_governance_server_traces_with_the_readers_permission(served):
    work: Path = served["work"]
    server_db = work / "server.db"
    shutil.copy(Path(served["registry"]["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")), server_db)
    backend = f"sqlite:///{server_db}"
    env = {**server_env(), "MLGOV_PAYLOAD_URL": served["payload_url"]}
    with mlflow_server(work, backend, "governed-" + backend, app_name="governance", env=env) as url:
        requests.post(f"{url}/api/2.0/mlflow/users/create", json={"username": "rita", "password": "rita-password-1"},
                      auth=("admin", ADMIN_PASSWORD), timeout=30).raise_for_status()
        rid = served["v1_ids"][2]
        r = requests.get(f"{url}/api/2.0/mlflow-governance/trace", params={"request_id": rid},
                         auth=("rita", "rita-password-1"), timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["request_id"] == rid and body["version"] == 1
        assert links_of(body)["validation"]["found"] and links_of(body)["training dataset"]["found"]
        sheet = requests.get(f"{url}/api/2.0/mlflow-governance/factsheet", params={"model": MODEL},
                             auth=("rita", "rita-password-1"), timeout=60)
        assert sheet.status_code == 200, sheet.text
        link = f"{url}/api/2.0/mlflow-governance/trace?request_id={latest_request(served, 1)}"
        assert link in sheet.text
        assert requests.get(link, auth=("rita", "rita-password-1"), timeout=60).json()["version"] == 1
        denied = requests.post(f"{url}/api/3.0/mlflow/users/permissions/grant", auth=("admin", ADMIN_PASSWORD),
                               json={"username": "rita", "resource_type": "registered_model", "resource_id": MODEL,
                                     "permission": "DENY"}, timeout=30)
        assert denied.status_code == 200, denied.text
        r = requests.get(f"{url}/api/2.0/mlflow-governance/trace", params={"request_id": rid},
                         auth=("rita", "rita-password-1"), timeout=60)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
        for params, status in (({"request_id": "xyz"}, 400), ({"request_id": "f" * 32}, 404), ({}, 400)):
            r = requests.get(f"{url}/api/2.0/mlflow-governance/trace", params=params,
                             auth=("admin", ADMIN_PASSWORD), timeout=60)
            assert r.status_code == status and r.json()["message"], (params, r.status_code, r.text)


def test_a_missing_link_is_reported_missing_never_invented(served, monkeypatch):
    """A registry where the version's validation report names no run: that link is missing,
    with the reason; the others still stand."""
    for key, value in served["registry"].items():
        monkeypatch.setenv(key, value)
    sources = ClientSources()

    class NoRuns(ClientSources):
        def run(self, run_id):
            return None

    result = trace(served["v1_ids"][0], served["payload_url"], NoRuns(sources.governance, sources.mlflow))
    links = links_of(result)
    assert links["development run"]["found"] is False and "cannot be read" in links["development run"]["missing"]
    assert links["training dataset"]["found"] is False and "cannot be read" in links["training dataset"]["missing"]
    assert links["validation"]["missing"] and "cannot be read" in links["validation"]["missing"]
    assert links["approvals"]["found"] is True
    with pytest.raises(TraceError) as raised:
        trace("g" * 32, served["payload_url"], sources)
    assert raised.value.kind == "invalid"


def test_the_fact_sheet_carries_the_live_evidence(served, tmp_path):
    env = {**sidecar_env(served["registry"]["MLFLOW_REGISTRY_URI"], served["registry"]["MLFLOW_TRACKING_URI"]),
           "MLGOV_USER": "mona"}
    # One batch evaluation of the production version's rows, as a scheduled job would make.
    p = subprocess.run([MLGOV, "monitor", "--model", MODEL, "--payload-url", served["payload_url"]], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([MLGOV, "factsheet", MODEL, "--payload-url", served["payload_url"]],
                       env={**env, "MLGOV_USER": "olivia"}, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    sheet = p.stdout
    usability = sheet.split("## Usability history")[1].split("## ")[0]
    assert re.search(r"\| 1 \| accept \(Ready to Use\) \| olivia \|", usability)
    assert re.search(r"\| 1 \| decommissioned \|", usability)
    assert re.search(rf"\| {served['v2']} \| accept \(Ready to Use\) \|", usability)
    live = sheet.split("## Live monitor evaluations (latest first)")[1].split("## ")[0]
    assert re.search(rf"\| {served['v2']} \| (PASS|INSUFFICIENT|BREACH) \| {rows_of(served, served['v2'])} \|",
                     live), live
    traces = sheet.split("## Traces")[1].split("## ")[0]
    for version in (1, served["v2"]):
        assert f"mlgov trace {latest_request(served, version)}" in traces
    # Without a payload database the sheet says where the live evidence would come from.
    p = subprocess.run([MLGOV, "factsheet", MODEL], env={**env, "MLGOV_USER": "olivia"}, capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert p.returncode == 0 and "no payload database given" in p.stdout
