"""A real `mlflow server --app-name governance`: users, roles and a full walk over REST."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException

from mlflow_governance.client.governance import GovernanceClient
from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.core import workflow as wf
from tests.cli_in_process import mlgov as mlgov_in_process
from tests.conftest import USERS, new_pg_database, unique
from tests.governance_helpers import PATH, fields_for
from tests.servers import mlflow_server

ADMIN_PASSWORD = "admin-pass-" + os.urandom(4).hex()
MLGOV = str(Path(sys.executable).parent / "mlgov")


def password(user: str) -> str:
    return f"{user}-password-1"


def server_env() -> dict[str, str]:
    return {"MLGOV_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
            "MLGOV_ADMIN": "admin"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def governance_server(request, tmp_path_factory, sqlite_template):
    """A governance server with seven users, one per role (module-scoped: it is slow to start), on
    a copy of the migrated template database of its kind."""
    workdir = tmp_path_factory.mktemp(f"gov-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            shutil.copy(sqlite_template, workdir / "mlflow.db")
            backend = f"sqlite:///{workdir}/mlflow.db"
        else:
            backend = stack.enter_context(new_pg_database("mlgov_srv", request.getfixturevalue("pg_template")))
        url = stack.enter_context(mlflow_server(workdir, backend, "governed-" + backend, app_name="governance",
                                                env=server_env()))
        admin_api = RestGovernance(url, "admin", ADMIN_PASSWORD)
        # One user through the CLI, as an admin would; the rest through the same REST calls.
        env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin",
               "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
        env.pop("MLFLOW_REGISTRY_URI", None)
        p = mlgov_in_process("users", "add", "olivia", "--password", password("olivia"), "--role", wf.MODEL_OWNER,
                             env=env)
        assert p.returncode == 0, p.stderr
        for user, role in USERS.items():
            if user != "olivia":
                admin_api.add_user(user, password(user))
                assert admin_api.grant(user, role) is True
        yield url


def api(url: str, user: str) -> RestGovernance:
    return RestGovernance(url, user, password(user))


def create_version(url: str, user: str, model: str) -> int:
    r = requests.post(f"{url}/api/2.0/mlflow/model-versions/create", json={"name": model, "source": "s3://models-bucket/delay"},
                      auth=(user, password(user)), timeout=30)
    assert r.status_code == 200, r.text
    return int(r.json()["model_version"]["version"])


def new_version_in_development(url: str, model: str) -> int:
    """A model walked over the API to Approved for Development, and a new version of it."""
    role_user = {role: user for user, role in USERS.items()}
    api(url, "olivia").initiate(model, "flight delay prediction", "high", None)
    for row in PATH:
        if row.scope == wf.VERSION_SCOPE:
            break
        api(url, role_user[row.role]).transition(model, row.action, None, fields_for(row.source, model, None), None)
    return create_version(url, "devi", model)


def test_walk_to_ready_to_use_over_rest(governance_server):
    url = governance_server
    model = unique("srv")
    role_user = {role: user for user, role in USERS.items()}
    inventory_id = api(url, "olivia").initiate(model, "flight delay prediction", "high", None)
    assert inventory_id.startswith("MOD_")
    version = None
    for row in PATH:
        if row.scope == wf.VERSION_SCOPE and version is None:
            version = create_version(url, "devi", model)
        status = api(url, role_user[row.role]).transition(
            model, row.action, version, fields_for(row.source, model, version), None
        )
        entity = status["version"] if row.scope == wf.VERSION_SCOPE else status
        assert entity["stage"] == row.dest
    status = api(url, "mona").status(model, version)
    assert status["version"]["stage"] == wf.READY_TO_USE and status["production_version"] == version
    # The audit trail names the real, authenticated user of each step.
    rows = [r for r in api(url, "olivia").audit(model, None) if r["outcome"] == "allowed"]
    assert [r["actor"] for r in rows] == ["olivia"] + [role_user[row.role] for row in PATH]
    assert api(url, "olivia").verify_audit()["ok"]
    sheet = api(url, "adam").factsheet(model)
    assert inventory_id in sheet and "| victor | ModelValidator |" in sheet


def test_refusals_have_the_right_status(governance_server):
    url = governance_server
    model = unique("deny")
    api(url, "olivia").initiate(model, "x", "low", None)
    endpoint = f"{url}/api/2.0/mlflow-governance/models/transition"
    body = {"model": model, "action": "approve"}
    cases = [
        (None, 401, "UNAUTHENTICATED"),  # no credentials
        (("adam", "wrong-password-1"), 401, "UNAUTHENTICATED"),  # bad password
        (("nobody", "whatever-pass-1"), 401, "UNAUTHENTICATED"),  # unknown user
        (("devi", password("devi")), 403, "PERMISSION_DENIED"),  # wrong role
        (("olivia", password("olivia")), 403, "PERMISSION_DENIED"),  # owner may not approve candidacy
    ]
    for auth, status, code in cases:
        r = requests.post(endpoint, json=body, auth=auth, timeout=30)
        assert r.status_code == status, (auth, r.text)
        assert r.json()["error_code"] == code
    bad = [
        ({"model": model}, 400),
        ({"model": model, "action": "approve", "version": "two"}, 400),
        ({"model": model, "action": "approve", "version": 10**30}, 400),
        ({"model": model, "action": "approve", "version": -1}, 400),
        ({"model": model, "action": "approve", "fields": ["x"]}, 400),
        ({"model": unique("ghost"), "action": "approve"}, 404),
        ({"model": model, "action": "submit"}, 409),
    ]
    for payload, status in bad:
        r = requests.post(endpoint, json=payload, auth=("adam", password("adam")), timeout=30)
        assert r.status_code == status, (payload, r.text)
        assert r.json()["message"]
    for query in ({"limit": "-1"}, {"limit": str(10**30)}, {"limit": "x"}):
        r = requests.get(f"{url}/api/2.0/mlflow-governance/audit", params=query, auth=("adam", password("adam")),
                         timeout=30)
        assert r.status_code == 400 and "limit" in r.json()["message"], (query, r.text)
    r = requests.post(endpoint, data="not json", headers={"Content-Type": "application/json"},
                      auth=("adam", password("adam")), timeout=30)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    # Stock registry route: the mlgov.action tag as the wrong user is refused with MLflow's error.
    r = requests.post(f"{url}/api/2.0/mlflow/registered-models/set-tag",
                      json={"name": model, "key": "mlgov.action", "value": "approve"},
                      auth=("erin", password("erin")), timeout=30)
    assert r.status_code == 403 and "ModelApprover role is required" in r.json()["message"]
    assert api(url, "adam").status(model, None)["stage"] == wf.CANDIDACY_REVIEW
    refused = [r for r in api(url, "olivia").audit(model, None) if r["outcome"] == "refused"]
    assert {r["actor"] for r in refused} >= {"devi", "olivia", "erin"}
    # Only the admin manages roles and users.
    with pytest.raises(Exception) as exc:
        api(url, "olivia").grant("olivia", wf.MODEL_APPROVER)
    assert exc.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(Exception) as exc:
        api(url, "olivia").add_user("mallory", "mallory-password")
    assert exc.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(Exception) as exc:
        RestGovernance(url, "admin", ADMIN_PASSWORD).grant("ghost-user", wf.MODEL_OWNER)
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_every_bad_request_is_400_naming_its_parameter(governance_server):
    """Each route's input checks, over REST: 400 INVALID_PARAMETER_VALUE naming what is wrong."""
    url = governance_server
    model = unique("bad")
    api(url, "olivia").initiate(model, "x", "low", None)
    base = f"{url}/api/2.0/mlflow-governance"
    adam, victor, olivia = ("adam", password("adam")), ("victor", password("victor")), ("olivia", password("olivia"))
    posts = [
        ("/models/transition", adam, [1, 2], "JSON object"),
        ("/models/transition", adam, {"model": ["x"], "action": "approve"}, "'model' must be a string"),
        ("/models/transition", adam, {"model": model, "action": "approve", "evidence": "breach"}, "evidence"),
        ("/models/transition", adam, {"model": model, "action": "approve", "evidence": {"x": "y" * 20001}},
         "evidence is longer than"),
        ("/models/monitors", victor, {"model": model, "config": {}}, "version is required"),
        ("/models/monitors", victor, {"model": model, "version": 1, "config": "quality"}, "config must be an object"),
        ("/models/may", adam, {"model": model, "action": "approve", "new_version": "yes"}, "new_version must be"),
    ]
    for path, auth, body, says in posts:
        r = requests.post(base + path, json=body, auth=auth, timeout=30)
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", (path, body, r.text)
        assert says in r.json()["message"], (says, r.text)
    gets = [
        ("/tasks", {"role": "Astronaut"}, "unknown role"),
        ("/audit/verify", {"expect_seq": "3"}, "give both expect_seq and expect_hash"),
        ("/factsheet", {"model": model, "format": "pdf"}, "format must be md or html"),
    ]
    for path, query, says in gets:
        r = requests.get(base + path, params=query, auth=olivia, timeout=30)
        assert r.status_code == 400 and says in r.json()["message"], (path, r.text)
    # No payload database configured: the trace route says which setting names it.
    r = requests.get(base + "/trace", params={"request_id": "0" * 32}, auth=olivia, timeout=30)
    assert r.status_code == 404 and "MLGOV_PAYLOAD_URL" in r.json()["message"], r.text
    assert api(url, "adam").status(model, None)["stage"] == wf.CANDIDACY_REVIEW  # nothing changed


def test_lists_across_models_show_a_user_only_the_models_they_may_read(governance_server):
    """Without a model, the audit trail and the events of a user who is not an admin keep only
    models MLflow lets them read; a model denied to them is in neither."""
    url = governance_server
    seen, hidden = unique("seen"), unique("hidden")
    for model in (seen, hidden):
        api(url, "olivia").initiate(model, "x", "low", None)
    r = requests.post(f"{url}/api/3.0/mlflow/users/permissions/grant", auth=("admin", ADMIN_PASSWORD),
                      json={"username": "adam", "resource_type": "registered_model", "resource_id": hidden,
                            "permission": "DENY"}, timeout=30)
    assert r.status_code == 200, r.text
    base = f"{url}/api/2.0/mlflow-governance"
    adam = ("adam", password("adam"))
    events = requests.get(base + "/events", params={"limit": "1000"}, auth=adam, timeout=30).json()["events"]
    rows = requests.get(base + "/audit", auth=adam, timeout=30).json()["rows"]
    for listed in ({e["model"] for e in events}, {r["model"] for r in rows}):
        assert seen in listed and hidden not in listed, (seen, hidden)
    admin_events = requests.get(base + "/events", params={"limit": "1000"}, auth=("admin", ADMIN_PASSWORD),
                                timeout=30).json()["events"]
    assert hidden in {e["model"] for e in admin_events}
    r = requests.get(base + "/events", params={"model": hidden}, auth=adam, timeout=30)
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/secret.txt"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/upload.txt"),
        ("POST", "/v1/traces"),
        ("GET", "/ajax-api/3.0/jobs/123"),
        ("GET", "/api/3.0/mlflow/server-info"),
        ("GET", "/ajax-api/3.0/mlflow/server-info"),
        ("GET", "/api/2.0/mlflow/registered-models/search"),
        ("GET", "/governance/"),
        ("GET", "/"),
    ],
)
def test_every_route_refuses_strangers(governance_server, method, path):
    """Native FastAPI routes included: they bypass Flask hooks, so they are guarded separately."""
    r = requests.request(method, governance_server + path, data=b"x", timeout=30)
    assert r.status_code == 401, (path, r.status_code, r.text[:200])
    r = requests.request(method, governance_server + path, data=b"x", auth=("adam", "bad-password-1"), timeout=30)
    assert r.status_code == 401, path


# ``mlgov`` as installed, reporting on stderr whether it imported MLflow by the time it exited.
IMPORTS_MLFLOW = (
    "import sys\n"
    "from mlflow_governance.cli.main import cli\n"
    "try:\n"
    "    cli(sys.argv[1:], prog_name='mlgov')\n"
    "finally:\n"
    "    print('imported mlflow:', 'mlflow' in sys.modules, file=sys.stderr)\n"
)


def test_commands_against_a_server_never_import_mlflow(governance_server, tmp_path):
    """Against a governance server ``mlgov`` talks REST: a command that succeeds never imports
    MLflow (about 1.5-3.5 CPU s of a start); only an error, raised as MLflow's exception, does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}

    def run(user: str, *args: str) -> subprocess.CompletedProcess:
        secret = ADMIN_PASSWORD if user == "admin" else password(user)
        return subprocess.run([sys.executable, "-c", IMPORTS_MLFLOW, *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120,
                              env={**env, "MLFLOW_TRACKING_URI": governance_server,
                                   "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": secret})

    model = unique("light")
    for user, args in (("olivia", ("initiate", model, "--use-case", "light client")),
                       ("adam", ("tasks",)),
                       ("adam", ("transition", model, "approve", "--comment", "fine")),
                       ("olivia", ("status", model, "--json")),
                       ("olivia", ("audit", "show", "--model", model)),
                       ("admin", ("roles", "list")),
                       ("admin", ("users", "add", unique("newcomer"), "--role", wf.MODEL_MONITOR,
                                  "--password", "light-password-1"))):
        done = run(user, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr.strip().splitlines()[-1] == "imported mlflow: False", (args, done.stderr)
    refused = run("olivia", "transition", model, "approve")
    assert refused.returncode == 3 and refused.stderr.startswith("Error: "), refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == "imported mlflow: True"


def test_mlgov_cli_against_the_server(governance_server, tmp_path):
    """The installed ``mlgov`` as a process where the answer is an exit code (a refusal, a wrong
    password), the rest in-process (click's runner: the same commands against the same server)."""
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    url = governance_server
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    env.update({"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "olivia",
                "MLFLOW_TRACKING_PASSWORD": password("olivia")})

    def installed(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([MLGOV, *args], env=env, capture_output=True, text=True, cwd=tmp_path)

    def in_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        settings = {k: env[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        result = CliRunner().invoke(cli, args, env=settings)
        return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)

    model = unique("cli")
    p = installed(["initiate", model, "--use-case", "remote"], env)
    assert p.returncode == 0 and p.stdout.strip().startswith("MOD_"), p.stderr
    p = installed(["transition", model, "approve"], env)
    assert p.returncode == 3 and "ModelApprover" in p.stderr and "Traceback" not in p.stderr
    env_adam = {**env, "MLFLOW_TRACKING_USERNAME": "adam", "MLFLOW_TRACKING_PASSWORD": password("adam")}
    p = in_process(["tasks"], env_adam)
    assert p.returncode == 0 and model in p.stdout
    p = in_process(["transition", model, "approve"], env_adam)
    assert p.returncode == 0 and wf.DATA_ACQUISITION in p.stdout, p.stderr
    env_admin = {**env, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
    p = in_process(["roles", "list"], env_admin)
    assert p.returncode == 0 and "victor" in p.stdout and wf.MODEL_VALIDATOR in p.stdout
    env_bad = {**env, "MLFLOW_TRACKING_PASSWORD": "wrong-password-1"}
    p = installed(["status", model], env_bad)
    assert p.returncode == 3 and "authentication required" in p.stderr
    assert not any(tmp_path.iterdir())
    # The Python API works against the server the same way.
    client = GovernanceClient(url)
    assert client.remote
    client.backend.auth = ("erin", password("erin"))
    assert client.status(model)["stage"] == wf.DATA_ACQUISITION


def test_server_refuses_to_start_without_admin_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLGOV_", "MLFLOW_AUTH"))}
    p = subprocess.run([MLGOV, "server", "--port", "1"], env={**env, "MLFLOW_REGISTRY_STORE_URI":
                       f"governed-sqlite:///{tmp_path}/m.db"}, capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode != 0 and "MLGOV_ADMIN_PASSWORD is not set" in p.stderr
    config = tmp_path / "governance.env"
    config.write_text(f"MLFLOW_REGISTRY_STORE_URI=governed-sqlite:///{tmp_path}/m.db\nMLGOV_ADMIN_PASSWORD=pw-long-enough\n")
    p = subprocess.run([MLGOV, "server", "--config", str(config), "--dry-run"], env=env, capture_output=True,
                       text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "--app-name governance" in p.stdout and f"--backend-store-uri sqlite:///{tmp_path}/m.db" in p.stdout
    config.write_text("MLGOV_ADMIN_PASSWORD=x\nTYPO_KEY=1\n")
    p = subprocess.run([MLGOV, "server", "--config", str(config)], env=env, capture_output=True, text=True,
                       cwd=tmp_path)
    assert p.returncode != 0 and "unknown key 'TYPO_KEY'" in p.stderr


def test_model_at_a_glance_and_the_owners_review_after_a_usability_reject(governance_server, monkeypatch):
    """Issue findings: the model looked stuck, and a red production version was nobody's task."""
    from click.testing import CliRunner

    from mlflow_governance.cli.main import cli

    url = governance_server
    model = unique("glance")
    role_user = {role: user for user, role in USERS.items()}
    api(url, "olivia").initiate(model, "flight delay prediction", "high", None)
    v1 = None
    for row in PATH:
        if row.scope == wf.VERSION_SCOPE and v1 is None:
            v1 = create_version(url, "devi", model)
        api(url, role_user[row.role]).transition(model, row.action, v1 if row.scope == wf.VERSION_SCOPE else None,
                                                  fields_for(row.source, model, v1), None)
    v2 = create_version(url, "devi", model)
    for row in PATH:
        if row.scope == wf.VERSION_SCOPE and row.source in (wf.APPROVED_FOR_DEVELOPMENT, wf.MODEL_DEVELOPMENT_COMPLETED):
            api(url, role_user[row.role]).transition(model, row.action, v2, fields_for(row.source, model, v2), None)

    def model_tags() -> dict[str, str]:
        r = requests.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": model},
                         auth=("olivia", password("olivia")), timeout=30)
        return {t["key"]: t["value"] for t in r.json()["registered_model"].get("tags", [])}

    tags = model_tags()
    assert tags["mlgov.stage"] == wf.APPROVED_FOR_DEVELOPMENT  # versions still enter here...
    assert tags["mlgov.production"] == f"version {v1} (usability accept)"  # ...but the model is not stuck
    assert tags["mlgov.in_flight"] == f"v{v2} {wf.APPROVED_FOR_VALIDATION} (waiting for {wf.MODEL_VALIDATOR})"

    api(url, "mona").transition(model, wf.REJECT, v1, {}, "drift: share of drifted features 0.6")
    tags = model_tags()
    assert tags["mlgov.production"].startswith(f"version {v1} REFUSED (usability reject)")
    tasks = [t for t in api(url, "olivia").tasks(None) if t["model"] == model]
    assert [(t["version"], t["actions"], t["usability"]) for t in tasks] == [
        (v1, [wf.ACCEPT, wf.DECOMMISSION], "reject")
    ]
    status = api(url, "olivia").status(model, v1)
    assert status["version"]["assignee_role"] == wf.MODEL_OWNER and "REFUSED" in status["production"]
    assert "REFUSED" in api(url, "adam").factsheet(model)
    page = requests.get(f"{url}/governance/model", params={"name": model}, auth=("olivia", password("olivia")),
                        timeout=30)
    assert page.status_code == 200 and "REFUSED" in page.text
    inbox = requests.get(f"{url}/governance/", auth=("olivia", password("olivia")), timeout=30)
    assert "REFUSED (usability reject)" in inbox.text
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "olivia")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password("olivia"))
    out = CliRunner().invoke(cli, ["status", model]).output
    assert f"version {v1}: {wf.READY_TO_USE}" in out and "*production, REFUSED*" in out
    assert "REFUSED" in CliRunner().invoke(cli, ["tasks"]).output

    api(url, "olivia").transition(model, wf.ACCEPT, v1, {}, "reviewed: seasonal, within tolerance")
    assert model_tags()["mlgov.production"] == f"version {v1} (usability accept)"
    assert [t for t in api(url, "olivia").tasks(None) if t["model"] == model and t["version"] == v1] == []
    verdict = RestGovernance(url, "admin", ADMIN_PASSWORD).verify_audit()
    assert [d for d in verdict["discrepancies"] if d["model"] == model] == []


def test_monitor_configuration_over_rest(governance_server):
    """`GovernanceClient.set_monitors` against the server: checked, canonical, audited, role-gated."""
    from mlflow_governance.core.monitor_config import parse_config

    url = governance_server
    model = unique("mon")
    api(url, "olivia").initiate(model, "flight delay prediction", "high", None)
    version = None
    for row in PATH:
        if row.source == wf.APPROVED_FOR_VALIDATION:
            break
        if row.scope == wf.VERSION_SCOPE and version is None:
            version = create_version(url, "devi", model)
        api(url, {r: u for u, r in USERS.items()}[row.role]).transition(
            model, row.action, version, fields_for(row.source, model, version), None)
    config = {"quality": {"thresholds": {"roc_auc": 0.75}}, "drift": {"max_share_drifted": 0.5}}
    with pytest.raises(MlflowException) as refused:
        api(url, "mona").set_monitors(model, version, config)
    assert refused.value.error_code == "PERMISSION_DENIED" and "ModelValidator role is required" in refused.value.message
    with pytest.raises(MlflowException) as bad:
        api(url, "victor").set_monitors(model, version, {"quality": {"thresholds": {"auc": 0.7}}})
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE" and "quality.thresholds.auc" in bad.value.message
    status = api(url, "victor").set_monitors(model, version, config)
    expected = parse_config(config)
    assert status["version"]["monitors"] == {"config": expected.canonical_json(), "digest": expected.digest()}
    row = api(url, "olivia").audit(model, None)[-1]
    assert (row["action"], row["actor"], row["outcome"]) == ("set_monitors", "victor", "allowed")
    assert row["fields"]["monitor_config_digest"] == expected.digest()
    assert api(url, "olivia").verify_audit()["ok"]
