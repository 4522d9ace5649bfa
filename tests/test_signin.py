"""Sign-in on a real governance server with two workers: the credential cache never outlives a
change, failures are never cached and lock out, and the browser session cookie.

Each request below opens a new connection, so the two uvicorn workers share the traffic; a
cache that only one worker invalidated would let the other answer with the old password.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.core import workflow as wf
from tests.servers import mlflow_server
from tests.test_governance_server import ADMIN_PASSWORD, server_env

REQUESTS = 16  # per check: with fresh connections both workers answer some
SESSION_SECONDS = 6
LOCKOUT_SECONDS = 4
MAX_FAILURES = 3


def _start(tmp_path_factory, template: Path, name: str, **env: str):
    workdir = tmp_path_factory.mktemp(name)
    shutil.copy(template, workdir / "mlflow.db")  # already migrated: the server starts sooner
    backend = f"sqlite:///{workdir}/mlflow.db"
    return workdir, mlflow_server(workdir, backend, "governed-" + backend, app_name="governance",
                                  env={**server_env(), **env}, workers=2)


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_template):
    workdir, running = _start(tmp_path_factory, sqlite_template, "signin", MLGOV_AUTH_CACHE_SECONDS="300")
    with running as url:
        yield url, workdir


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory, sqlite_template):
    """Small lock-out and session limits, to see them engage and lift."""
    workdir, running = _start(tmp_path_factory, sqlite_template, "signin-strict", MLGOV_SIGNIN_MAX_FAILURES=str(MAX_FAILURES),
                              MLGOV_SIGNIN_LOCKOUT_SECONDS=str(LOCKOUT_SECONDS),
                              MLGOV_SESSION_SECONDS=str(SESSION_SECONDS))
    with running as url:
        yield url, workdir


def admin(url: str) -> RestGovernance:
    return RestGovernance(url, "admin", ADMIN_PASSWORD)


def statuses(url: str, user: str, password: str, n: int = REQUESTS) -> list[int]:
    """Status codes of ``n`` authenticated reads, each on a new connection."""
    return [requests.get(f"{url}/api/2.0/mlflow/users/current", auth=(user, password), timeout=30,
                         headers={"Connection": "close"}).status_code for _ in range(n)]


def set_password(url: str, user: str, new: str) -> None:
    r = requests.patch(f"{url}/api/2.0/mlflow/users/update-password", json={"username": user, "password": new},
                       auth=("admin", ADMIN_PASSWORD), timeout=30)
    assert r.status_code == 200, r.text


def test_a_changed_password_is_refused_on_the_very_next_request(server):
    url, _ = server
    admin(url).add_user("pat", "pat-first-password")
    assert statuses(url, "pat", "pat-first-password") == [200] * REQUESTS  # cached in both workers (300 s)
    set_password(url, "pat", "pat-second-password")
    assert statuses(url, "pat", "pat-first-password") == [401] * REQUESTS
    assert statuses(url, "pat", "pat-second-password") == [200] * REQUESTS


def test_a_deleted_user_is_refused_on_the_very_next_request(server):
    url, _ = server
    admin(url).add_user("quinn", "quinn-password-1")
    assert statuses(url, "quinn", "quinn-password-1") == [200] * REQUESTS
    admin(url).delete_user("quinn")
    assert statuses(url, "quinn", "quinn-password-1") == [401] * REQUESTS


def test_a_revoked_role_cannot_act(server):
    url, _ = server
    admin(url).add_user("rosa", "rosa-password-1")
    assert admin(url).grant("rosa", wf.MODEL_OWNER) is True
    rosa = RestGovernance(url, "rosa", "rosa-password-1")
    rosa.initiate("signin-model-1", "delay prediction", "high", None)
    admin(url).revoke("rosa", wf.MODEL_OWNER)
    for name in ("signin-model-2", "signin-model-3"):  # whichever worker answers
        r = requests.post(f"{url}/api/2.0/mlflow-governance/models/initiate", auth=("rosa", "rosa-password-1"),
                          json={"model": name, "use_case": "delay prediction", "risk_tier": "high"},
                          headers={"Connection": "close"}, timeout=30)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", r.text
        assert wf.MODEL_OWNER in r.json()["message"]


def _permission(url: str, action: str, user: str, model: str, permission: str | None = None) -> None:
    body = {"username": user, "resource_type": "registered_model", "resource_id": model}
    if permission is not None:
        body["permission"] = permission
    r = requests.post(f"{url}/api/3.0/mlflow/users/permissions/{action}", json=body,
                      auth=("admin", ADMIN_PASSWORD), timeout=30)
    assert r.status_code == 200, r.text


def model_reads(url: str, user: str, password: str, model: str, n: int = REQUESTS) -> list[int]:
    """Status codes of ``n`` reads of ``model``, each on a new connection."""
    return [requests.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": model},
                         auth=(user, password), timeout=30, headers={"Connection": "close"}).status_code
            for _ in range(n)]


def test_a_changed_model_permission_holds_on_the_very_next_request(server):
    """MLflow's permission reads are remembered per worker, but a grant or a revocation made through
    either worker holds in both on the next request (the cache is 300 s here)."""
    url, _ = server
    admin(url).add_user("vera", "vera-password-1")
    r = requests.post(f"{url}/api/2.0/mlflow/registered-models/create", json={"name": "signin-perm-model"},
                      auth=("admin", ADMIN_PASSWORD), timeout=30)
    assert r.status_code == 200, r.text
    assert model_reads(url, "vera", "vera-password-1", "signin-perm-model") == [200] * REQUESTS
    _permission(url, "grant", "vera", "signin-perm-model", "DENY")
    assert model_reads(url, "vera", "vera-password-1", "signin-perm-model") == [403] * REQUESTS
    _permission(url, "revoke", "vera", "signin-perm-model")
    assert model_reads(url, "vera", "vera-password-1", "signin-perm-model") == [200] * REQUESTS


def test_a_revoked_admin_flag_holds_on_the_very_next_request(server):
    url, _ = server
    admin(url).add_user("wren", "wren-password-1")

    def set_admin(flag: bool) -> None:
        r = requests.patch(f"{url}/api/2.0/mlflow/users/update-admin", json={"username": "wren", "is_admin": flag},
                           auth=("admin", ADMIN_PASSWORD), timeout=30)
        assert r.status_code == 200, r.text

    def create_user(name: str) -> requests.Response:  # MLflow lets only admins create users
        return requests.post(f"{url}/api/2.0/mlflow/users/create", auth=("wren", "wren-password-1"),
                             json={"username": name, "password": f"{name}-password-1"},
                             headers={"Connection": "close"}, timeout=30)

    set_admin(True)
    created = create_user("wren-made-1")
    assert created.status_code == 200, created.text
    assert statuses(url, "wren", "wren-password-1") == [200] * REQUESTS  # remembered by both workers
    set_admin(False)
    for i in range(4):  # whichever worker answers
        r = create_user(f"wren-made-{i + 2}")
        assert r.status_code == 403, r.text


def test_a_failed_sign_in_is_never_cached(server):
    url, workdir = server
    admin(url).add_user("sam", "sam-password-1")
    assert statuses(url, "sam", "sam-password-2", 4) == [401] * 4
    set_password(url, "sam", "sam-password-2")  # the password that failed is now the right one
    assert statuses(url, "sam", "sam-password-2") == [200] * REQUESTS
    log = "".join(p.read_text(errors="replace") for p in workdir.glob("mlflow-server-*.log"))
    assert "failed sign-in for user 'sam' from 127.0.0.1" in log


def test_the_lock_out_engages_across_workers_and_lifts(strict_server):
    url, workdir = strict_server
    admin(url).add_user("tess", "tess-password-1")
    assert statuses(url, "tess", "wrong-password-1", MAX_FAILURES) == [401] * MAX_FAILURES
    locked = requests.get(f"{url}/api/2.0/mlflow/users/current", auth=("tess", "tess-password-1"), timeout=30)
    assert locked.status_code == 423, locked.text
    assert "locked" in locked.json()["message"] and "tess" in locked.json()["message"]
    assert 1 <= int(locked.headers["Retry-After"]) <= LOCKOUT_SECONDS
    # Locked means every check, in every worker, whatever the password: guessing stops.
    assert statuses(url, "tess", "tess-password-1", 6) == [423] * 6
    assert statuses(url, "tess", "another-guess-1", 6) == [423] * 6
    # Other users are not locked by tess's failures.
    admin(url).add_user("uma", "uma-password-1")
    assert statuses(url, "uma", "uma-password-1", 2) == [200, 200]
    time.sleep(LOCKOUT_SECONDS + 1)
    assert statuses(url, "tess", "tess-password-1", 4) == [200] * 4
    log = "".join(p.read_text(errors="replace") for p in workdir.glob("mlflow-server-*.log"))
    assert "sign-in for user 'tess' is locked" in log


def _signin(url: str, user: str, password: str, follow: bool = False) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    form = browser.get(f"{url}/governance/signin?next=/governance/", headers={"Accept": "text/html"}, timeout=30)
    assert form.status_code == 200 and 'id="signin"' in form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    r = browser.post(f"{url}/governance/signin", data={"username": user, "password": password, "csrf_token": token,
                                                      "next": "/governance/"},
                     headers={"Accept": "text/html"}, allow_redirects=follow, timeout=30)
    return browser, r


def test_a_page_without_credentials_goes_to_the_sign_in_form(strict_server):
    url, _ = strict_server
    r = requests.get(f"{url}/governance/model?name=x", headers={"Accept": "text/html"}, allow_redirects=False,
                     timeout=30)
    assert r.status_code == 303 and r.headers["Location"] == "/governance/signin?next=%2Fgovernance%2Fmodel%3Fname%3Dx"
    # Scripts get MLflow's 401, not a page.
    assert requests.get(f"{url}/governance/", timeout=30).status_code == 401


def test_the_session_cookie_signs_pages_and_the_mlflow_ui_in(strict_server):
    url, _ = strict_server
    admin(url).add_user("vera", "vera-password-1")
    browser, r = _signin(url, "vera", "vera-password-1")
    assert r.status_code == 303 and r.headers["Location"] == "/governance/"
    cookie = next(c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("mlgov_session="))
    attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=strict"
    assert attributes["max-age"] == f"Max-Age={SESSION_SECONDS}" and attributes["path"] == "Path=/"
    # No password from now on: the cookie alone.
    page = browser.get(f"{url}/governance/", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200 and 'id="current-user">vera<' in page.text
    search = browser.get(f"{url}/ajax-api/2.0/mlflow/registered-models/search", timeout=30)
    assert search.status_code == 200, search.text
    # MLflow's native FastAPI route that the UI asks first (guarded apart from Flask's hook).
    assert browser.get(f"{url}/ajax-api/3.0/mlflow/server-info", timeout=30).status_code == 200
    ui = browser.get(f"{url}/", headers={"Accept": "text/html"}, timeout=30)
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    # A forged cookie (another user's name under vera's signature) is refused.
    value = browser.cookies["mlgov_session"]
    forged = requests.Session()
    forged.cookies.set("mlgov_session", value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert forged.get(f"{url}/ajax-api/2.0/mlflow/registered-models/search", timeout=30).status_code == 401
    # It expires.
    time.sleep(SESSION_SECONDS + 1)
    assert browser.get(f"{url}/ajax-api/2.0/mlflow/registered-models/search", timeout=30).status_code == 401


def test_a_password_change_ends_the_session_and_sign_out_clears_it(strict_server):
    url, _ = strict_server
    admin(url).add_user("wyn", "wyn-password-1")
    browser, r = _signin(url, "wyn", "wyn-password-1", follow=True)
    assert r.status_code == 200 and 'id="current-user">wyn<' in r.text
    set_password(url, "wyn", "wyn-password-2")
    assert browser.get(f"{url}/ajax-api/2.0/mlflow/registered-models/search", timeout=30).status_code == 401
    browser, r = _signin(url, "wyn", "wyn-password-2", follow=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    out = browser.post(f"{url}/governance/signout", data={"csrf_token": token}, allow_redirects=False, timeout=30)
    assert out.status_code == 303 and "mlgov_session" not in browser.cookies
    assert browser.get(f"{url}/ajax-api/2.0/mlflow/registered-models/search", timeout=30).status_code == 401


def test_the_sign_in_form_refuses_a_wrong_password_and_a_foreign_next(strict_server):
    url, _ = strict_server
    admin(url).add_user("xan", "xan-password-1")
    _, r = _signin(url, "xan", "not-the-password")
    assert r.status_code == 401 and "wrong user name or password" in r.text and "mlgov_session" not in r.cookies
    browser = requests.Session()
    form = browser.get(f"{url}/governance/signin", timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    r = browser.post(f"{url}/governance/signin", data={"username": "xan", "password": "xan-password-1",
                                                      "csrf_token": token, "next": "//evil.example/x"},
                     allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"] == "/governance/"
    r = requests.post(f"{url}/governance/signin", data={"username": "xan", "password": "xan-password-1"}, timeout=30)
    assert r.status_code == 400 and "not accepted" in r.text  # no CSRF token
