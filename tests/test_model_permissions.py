"""MLflow's per-model permissions hold on every governance route and page (a real governance server).

The finding as it was made: the admin sets DENY for users on one model with MLflow's own
permission API; MLflow's routes refuse them, and so must every governance route and page.
"""

from __future__ import annotations

import os
import shutil

import pytest
import requests

from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.core import workflow as wf
from mlflow_governance.server import api
from tests.conftest import USERS, unique
from tests.servers import mlflow_server

ADMIN_PASSWORD = "admin-pass-" + os.urandom(4).hex()
PREFIXES = (api.PREFIX, api.AJAX_PREFIX)
TRUSTED_ORIGIN = "http://127.0.0.1:8443"


def password(user: str) -> str:
    return f"{user}-password-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_template):
    """A governance server with one user per role, two governed models and DENY on the first."""
    workdir = tmp_path_factory.mktemp("perm")
    shutil.copy(sqlite_template, workdir / "mlflow.db")  # already migrated: the server starts sooner
    backend = f"sqlite:///{workdir}/mlflow.db"
    env = {"MLGOV_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
           "MLGOV_ADMIN": "admin",
           # The README's tightened settings: one browser origin, and the user list for admins only.
           "MLGOV_ALLOWED_ORIGINS": TRUSTED_ORIGIN, "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": TRUSTED_ORIGIN,
           "MLGOV_USER_LIST": "admins"}
    with mlflow_server(workdir, backend, "governed-" + backend, app_name="governance", env=env) as url:
        admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
        for user, role in USERS.items():
            admin.add_user(user, password(user))
            admin.grant(user, role)
        denied, other = unique("denied"), unique("other")
        owner = RestGovernance(url, "olivia", password("olivia"))
        for model in (denied, other):
            owner.initiate(model, "flight delay prediction", "high", None)
        for user in ("adam", "erin", "devi"):
            r = requests.post(f"{url}/api/3.0/mlflow/users/permissions/grant", auth=("admin", ADMIN_PASSWORD),
                              json={"username": user, "resource_type": "registered_model", "resource_id": denied,
                                    "permission": "DENY"}, timeout=30)
            assert r.status_code == 200, r.text
        yield url, denied, other


def call(url: str, user: str, method: str, path: str, body: dict) -> requests.Response:
    auth = ("admin", ADMIN_PASSWORD) if user == "admin" else (user, password(user))
    if method == "GET":
        return requests.get(url + path, params=body, auth=auth, timeout=30)
    return requests.post(url + path, json=body, auth=auth, timeout=30)


def stage(url: str, model: str) -> str:
    return RestGovernance(url, "admin", ADMIN_PASSWORD).status(model, None)["stage"]


def test_mlflow_itself_refuses_the_denied_users(server):
    url, denied, other = server
    for user in ("adam", "devi"):
        assert call(url, user, "GET", "/api/2.0/mlflow/registered-models/get", {"name": denied}).status_code == 403
        assert call(url, user, "GET", "/api/2.0/mlflow/registered-models/get", {"name": other}).status_code == 200


# Every route of the table whose rule needs MLflow's permission on the model the request names,
# with a body that reaches it.
MODEL_ROUTES = [
    (path, method, {
        "/models/transition": {"action": "approve"},
        "/models/may": {"action": "approve"},
        "/models/set-field": {"name": "training_data_asset", "value": "file:///x.parquet"},
        "/factsheet": {"format": "md"},
        "/models/initiate": {"use_case": "take it over"},
    }.get(path, {}))
    for path, method, _handler, rule in api.ROUTES
    if rule.model_permission is not None
]


def test_every_route_names_its_rule():
    """The table is total: each route's rule is one of the declared rules, none left to a comment."""
    rules = {api.SIGNED_IN, api.READ_MODEL, api.EDIT_MODEL, api.EDIT_EXISTING, api.READABLE_MODELS,
             api.ONLY_READABLE, api.READ_TRACED_MODEL}
    for path, _method, _handler, rule in api.ROUTES:
        assert isinstance(rule, api.Rule) and (rule in rules or rule.name.startswith("ADMIN:")), path
    by_name = {path: rule.name for path, _method, _handler, rule in api.ROUTES}
    assert by_name["/models/initiate"] == "EDIT_EXISTING" and by_name["/models/may"] == "READ"
    assert {p for p, n in by_name.items() if n.startswith("ADMIN:")} == {
        "/roles/grant", "/roles/revoke", "/roles/list", "/users/contact", "/notifications", "/notifications/test"}
    assert len(MODEL_ROUTES) == 10, [r[0] for r in MODEL_ROUTES]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(("path", "method", "extra"), MODEL_ROUTES, ids=[r[0] for r in MODEL_ROUTES])
def test_every_model_route_refuses_a_denied_user(server, prefix, path, method, extra):
    url, denied, _other = server
    for user in ("adam", "erin", "devi"):
        r = call(url, user, method, prefix + path, {"model": denied, **extra})
        assert r.status_code == 403, (user, r.status_code, r.text)
        body = r.json()
        assert body["error_code"] == "PERMISSION_DENIED" and "MLflow's permission" in body["message"], body
    assert stage(url, denied) == wf.CANDIDACY_REVIEW


def test_reads_of_another_model_are_allowed(server):
    url, _denied, other = server
    for path, method, extra in MODEL_ROUTES:
        if method == "GET":
            r = call(url, "devi", method, api.PREFIX + path, {"model": other, **extra})
            assert r.status_code == 200, (path, r.text)
    r = call(url, "devi", "GET", "/governance/model", {"name": other})
    assert r.status_code == 200 and other in r.text


def test_denied_approver_cannot_approve_but_approves_another_model(server):
    url, denied, other = server
    r = call(url, "adam", "POST", api.PREFIX + "/models/transition", {"model": denied, "action": "approve"})
    assert r.status_code == 403
    assert stage(url, denied) == wf.CANDIDACY_REVIEW
    # The inbox and the approvals page list only the model adam may read.
    tasks = call(url, "adam", "GET", api.PREFIX + "/tasks", {}).json()["tasks"]
    assert [t["model"] for t in tasks if t["model"] in (denied, other)] == [other]
    page = call(url, "adam", "GET", "/governance/", {})
    assert page.status_code == 200 and other in page.text and denied not in page.text
    r = call(url, "adam", "POST", api.PREFIX + "/models/transition", {"model": other, "action": "approve"})
    assert r.status_code == 200, r.text
    assert stage(url, other) == wf.DATA_ACQUISITION
    r = call(url, "erin", "POST", api.PREFIX + "/models/set-field",
             {"model": other, "name": "training_data_asset", "value": "file:///d.parquet"})
    assert r.status_code == 200, r.text


def test_model_page_refuses_a_denied_user(server):
    url, denied, _other = server
    r = call(url, "devi", "GET", "/governance/model", {"name": denied})
    assert r.status_code == 403 and "flight delay prediction" not in r.text
    assert r.headers["content-type"].startswith("text/html") and "Permission denied" in r.text


def test_audit_without_a_model_shows_only_readable_models(server):
    url, denied, other = server
    rows = call(url, "devi", "GET", api.PREFIX + "/audit", {}).json()["rows"]
    models = {r["model"] for r in rows}
    assert other in models and denied not in models
    assert all(r["model"] for r in rows)  # role administration rows are the admin's
    admin_rows = call(url, "admin", "GET", api.PREFIX + "/audit", {}).json()["rows"]
    assert {denied, other} <= {r["model"] for r in admin_rows}
    assert any(r["action"] == "grant_role" for r in admin_rows)
    limited = call(url, "devi", "GET", api.PREFIX + "/audit", {"limit": 1}).json()["rows"]
    assert len(limited) == 1 and limited[0]["model"] != denied


def test_only_the_servers_own_and_listed_origins_are_answered(server):
    """MLflow alone lets any localhost page act with the user's credentials; MLGOV_ALLOWED_ORIGINS does not."""
    url, denied, _other = server
    body = {"model": denied, "action": "approve"}
    auth = ("adam", password("adam"))
    for origin in ("http://localhost:9999", "http://127.0.0.1:1"):
        evil = requests.post(url + api.PREFIX + "/models/transition", json=body, auth=auth, timeout=30,
                             headers={"Origin": origin})
        assert evil.status_code == 403 and "cross-origin request" in evil.json()["message"], evil.text
        read = requests.get(url + api.PREFIX + "/tasks", auth=auth, timeout=30, headers={"Origin": origin})
        assert read.status_code == 403 and "tasks" not in read.json()
        page = requests.get(url + "/api/2.0/mlflow/registered-models/search", auth=auth, timeout=30,
                            headers={"Origin": origin})
        assert page.status_code == 403  # MLflow's own routes too
    for origin in (TRUSTED_ORIGIN, url):  # listed, and the server's own (the MLflow UI, the approvals page)
        r = requests.post(url + api.PREFIX + "/models/transition", json=body, auth=auth, timeout=30,
                          headers={"Origin": origin})
        assert r.status_code == 403 and "MLflow's permission" in r.json()["message"]  # reached our check
        assert requests.get(url + api.PREFIX + "/tasks", auth=auth, timeout=30,
                            headers={"Origin": origin}).status_code == 200
    assert stage(url, denied) == wf.CANDIDACY_REVIEW


def test_user_list_is_for_admins_when_configured(server):
    url, _denied, _other = server
    for path in ("/api/2.0/mlflow/users/list", "/ajax-api/2.0/mlflow/users/list"):
        assert call(url, "devi", "GET", path, {}).status_code == 403
        r = call(url, "admin", "GET", path, {})
        assert r.status_code == 200 and "devi" in r.text
