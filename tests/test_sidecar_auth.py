"""Who may call a scoring sidecar: the security findings reproduced as they were found, each refused.

A real governance server (``mlgov server`` on a fresh PostgreSQL database, the seven people of the
lifecycle with their roles), a version walked to Ready to Use, and one real ``mlgov serve`` (gunicorn,
2 workers) reading governance as mona (ModelMonitor) and asking the server who each caller is.

Found before: every route but none answered without credentials and ignored wrong ones; a user that
MLflow's per-model permission denied got scores, explanations and /status; anybody could post
feedback (forged labels turned the model red or kept it green) and overwrite labels; one body under
2 MiB carried 43,478 rows; a 1.9 MB category and NUL / right-to-left override text were stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import requests
import sqlalchemy as sa

from mlflow_governance.core import workflow as wf
from mlflow_governance.sidecar.access import NO_AUTH_HEADER
from tests.conftest import new_pg_database, unique
from tests.test_production_setup import model_files, production_server, publish_version, walk
from tests.test_server_databases import ADMIN_PASSWORD, password
from tests.test_sidecar_support import (
    eventually,
    feature_rows,
    records,
    run_sidecar,
    serve_args,
    serve_once,
    sidecar_env,
)

AUTH_CACHE_SECONDS = 1.0
MAX_FAILURES = 30  # the sidecar's own count of wrong credentials per caller address and worker
ROUTES = [("POST", "/invocations"), ("POST", "/explain"), ("POST", "/feedback"), ("POST", "/feedback/correct"),
          ("GET", "/status"), ("GET", "/metrics")]


class Deployment:
    def __init__(self, server, model: str, version: int, sidecar, payloads: str, rows: list[dict]):
        self.server, self.model, self.version, self.sidecar, self.payloads, self.rows = \
            server, model, version, sidecar, payloads, rows

    def call(self, method: str, path: str, user: str | None = None, body=None, auth=None) -> requests.Response:
        if auth is None and user is not None:
            auth = (user, password(user))
        data = json.dumps(body if body is not None else {}) if method == "POST" else None
        return requests.request(method, self.sidecar.url + path, data=data, auth=auth, timeout=60,
                                headers={"Content-Type": "application/json"} if data is not None else {})

    def score(self, user: str, rows: list[dict] | None = None) -> requests.Response:
        return self.call("POST", "/invocations", user, {"dataframe_records": rows or self.rows})

    def admin(self, method: str, path: str, body: dict) -> requests.Response:
        return requests.request(method, self.server.url + path, json=body, auth=("admin", ADMIN_PASSWORD),
                                timeout=30)

    def deny(self, user: str) -> None:
        """MLflow's DENY for ``user`` on the model (MLflow 3's grant API)."""
        r = self.admin("POST", "/api/3.0/mlflow/users/permissions/grant",
                       {"username": user, "resource_type": "registered_model", "resource_id": self.model,
                        "permission": "DENY"})
        assert r.status_code == 200, r.text

    def query(self, sql: str, **params) -> list:
        engine = sa.create_engine(self.payloads)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql), params)]
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def deployment(trained_model, winter_flights, tmp_path_factory, pg_template) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("sidecar-auth")
    model = unique("auth-delay")
    rows = records(feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(3)))
    with ExitStack() as stack:
        server = stack.enter_context(production_server(tmp / "server", pg_template))
        version = publish_version(server, model_files(trained_model, tmp / "files"), model)
        walk(server, model, version, wf.READY_TO_USE)
        payloads = stack.enter_context(new_pg_database("mlgov_auth_payloads"))
        env = sidecar_env(**server.env("mona"), MLGOV_SIGNIN_MAX_FAILURES=str(MAX_FAILURES))
        sidecar = stack.enter_context(run_sidecar(
            tmp / "sidecar", env, "--model", model, "--payload-url", payloads, "--threads", "4",
            "--auth-cache-seconds", str(AUTH_CACHE_SECONDS), *serve_args(auth=True)))
        yield Deployment(server, model, version, sidecar, payloads, rows)


def test_every_route_but_health_refuses_anonymous_and_wrong_credentials(deployment):
    """Found: every route answered 200 without credentials, and wrong credentials were ignored."""
    assert deployment.call("GET", "/health").status_code == 200
    for method, path in ROUTES:
        for auth in (None, ("dora", "not-her-password"), ("nobody-such", "x" * 12)):
            r = deployment.call(method, path, auth=auth)
            assert r.status_code == 401, (method, path, auth and auth[0], r.status_code, r.text[:200])
            assert r.json()["error_code"] == "UNAUTHENTICATED"
            assert r.headers["WWW-Authenticate"].startswith("Basic")
            assert NO_AUTH_HEADER not in r.headers
    # nothing of the refused requests was scored or stored
    assert deployment.query("SELECT count(*) FROM mlgov_payload WHERE model = :m", m=deployment.model)[0][0] == 0


def test_a_reader_scores_and_each_row_names_its_caller(deployment):
    r = deployment.score("dora")
    assert r.status_code == 200, r.text
    ids = r.json()["request_ids"]
    stored = eventually(lambda: (found := deployment.query(
        "SELECT request_id, caller FROM mlgov_payload WHERE model = :m", m=deployment.model)) and
        {i for i, _ in found} >= set(ids) and found, timeout=20, what="the scored rows in the payload table")
    assert {caller for i, caller in stored if i in ids} == {"dora"}
    status = deployment.call("GET", "/status", "dora").json()
    assert status["authentication"]["mode"] == "governance-server" and status["caller"] == "dora"
    assert deployment.call("GET", "/metrics", "dora").status_code == 200


def test_a_user_denied_the_model_gets_nothing(deployment):
    """Found: a user whom MLflow's per-model permission DENYs got scores, explanations and /status."""
    deployment.deny("erin")
    for method, path in ROUTES:
        body = {"dataframe_records": deployment.rows} if path in ("/invocations", "/explain") else None
        r = deployment.call(method, path, "erin", body)
        assert r.status_code == 403, (path, r.status_code, r.text[:200])
        assert r.json()["error_code"] == "PERMISSION_DENIED" and deployment.model in r.json()["message"]
        assert "evaluation" not in r.text and "usability" not in r.text


def test_feedback_needs_the_monitor_role_and_cannot_be_rewritten(deployment):
    """Found: anybody's labels turned the model red (or kept it green), and the latest label won."""
    ids = deployment.score("dora").json()["request_ids"]
    forged = {"feedback": [{"request_id": i, "label": 1} for i in ids]}
    for user in ("dora", "devi"):  # a scoring client and a developer: no ModelMonitor role
        r = deployment.call("POST", "/feedback", user, forged)
        assert r.status_code == 403 and "ModelMonitor" in r.json()["message"], r.text
    given = {"feedback": [{"request_id": i, "label": 0} for i in ids]}
    r = deployment.call("POST", "/feedback", "mona", given)
    assert r.status_code == 200 and r.json()["accepted"] == len(ids) and r.json()["labeller"] == "mona", r.text
    # A second label for the same ids, even from the monitor: 409, the first label stands.
    r = deployment.call("POST", "/feedback", "mona", forged)
    assert r.status_code == 409 and r.json()["error_code"] == "FEEDBACK_EXISTS", r.text
    assert set(r.json()["request_ids"]) == set(ids)
    # One request naming one id 10,000 times (found: 10,000 labels stored for one id): 409, nothing stored.
    fresh = deployment.score("dora").json()["request_ids"][0]
    r = deployment.call("POST", "/feedback", "mona", {"feedback": [{"request_id": fresh, "label": 1}] * 1000})
    assert r.status_code == 409, r.text
    labels = deployment.query("SELECT request_id, label, labeller FROM mlgov_feedback WHERE request_id IN "
                              f"({', '.join(repr(i) for i in [*ids, fresh])})")
    assert sorted(labels) == sorted((i, 0, "mona") for i in ids), labels
    # Only the owner corrects, with a reason; the answer names the previous label and who corrected.
    body = {"request_id": ids[0], "label": 1, "reason": "the flight was re-timed after the first report"}
    assert deployment.call("POST", "/feedback/correct", "mona", body).status_code == 403
    r = deployment.call("POST", "/feedback/correct", "olivia", body)
    assert r.status_code == 200, r.text
    assert r.json()["previous_label"] == 0 and r.json()["corrected_by"] == "olivia"
    r = deployment.call("POST", "/feedback/correct", "olivia", {**body, "reason": "  "})
    assert r.status_code == 400 and r.json()["error_code"] == "MISSING_REASON"


def test_limits_rows_and_values(deployment):
    """Found: one body under 2 MiB carried 43,478 rows (8x the monitor window); a 1.9 MB category was
    stored verbatim, as were NUL and right-to-left override characters."""
    row = deployment.rows[0]
    many = {"inputs": {name: [value] * 43_478 for name, value in row.items()}}
    raw = json.dumps(many)
    assert len(raw) < 2 * 1024 * 1024
    r = deployment.call("POST", "/invocations", "dora", many)
    assert r.status_code == 413 and r.json()["error_code"] == "TOO_MANY_ROWS", r.text[:300]
    text_column = next(name for name, value in row.items() if isinstance(value, str))
    huge = {**row, text_column: "A" * 1_900_000}
    r = deployment.score("dora", [huge])
    assert r.status_code == 413 and r.json()["error_code"] == "VALUE_TOO_LONG", r.text[:300]
    for bad in ("AB\x00C", "AB\u202eC"):
        r = deployment.score("dora", [{**row, text_column: bad}])
        assert r.status_code == 400 and r.json()["error_code"] == "FORBIDDEN_CHARACTER", r.text[:300]
    stored = deployment.query("SELECT count(*) FROM mlgov_payload WHERE features LIKE '%AAAAAAAAAA%' OR "
                              "features LIKE :nul", nul="%\\u0000%")
    assert stored[0][0] == 0


def test_revoking_a_permission_refuses_within_the_cache_lifetime(deployment):
    assert deployment.score("adam").status_code == 200
    deployment.deny("adam")
    eventually(lambda: deployment.score("adam").status_code == 403, timeout=AUTH_CACHE_SECONDS + 10,
               what="adam refused after his permission was revoked")
    r = deployment.admin("PATCH", "/api/2.0/mlflow/users/update-password",
                         {"username": "victor", "password": "a-brand-new-password-1"})
    assert r.status_code == 200, r.text
    eventually(lambda: deployment.score("victor").status_code == 401, timeout=AUTH_CACHE_SECONDS + 10,
               what="victor's old password refused")
    ok = deployment.call("POST", "/invocations", body={"dataframe_records": deployment.rows},
                         auth=("victor", "a-brand-new-password-1"))
    assert ok.status_code == 200, ok.text


def test_guessing_through_the_sidecar_is_slowed_down(deployment):
    """Wrong passwords from one address get 429 from the sidecar itself after MAX_FAILURES per worker."""
    answers = []
    for _ in range(4 * MAX_FAILURES):  # two workers, each counts its own
        answers.append(deployment.call("POST", "/invocations", body={"dataframe_records": deployment.rows},
                                       auth=("dora", "guess-1234567")))
        if answers[-1].status_code == 429:
            break
    assert answers[-1].status_code == 429, [a.status_code for a in answers]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert {a.status_code for a in answers[:-1]} == {401}


def test_an_unauthenticated_sidecar_against_a_governance_server_is_refused(deployment, tmp_path):
    env = sidecar_env(**deployment.server.env("mona"))
    result = serve_once(tmp_path, env, "--model", deployment.model, *serve_args(auth=False))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--no-auth is refused against a governance server" in lines[0], result.stderr


def test_authentication_on_a_local_registry_needs_a_server_or_no_auth(production_model, tmp_path):
    env = sidecar_env(production_model.registry_uri, production_model.tracking_uri, MLGOV_USER="mona")
    result = serve_once(tmp_path, env, "--model", production_model.model, *serve_args(auth=True))
    assert result.returncode == 2, result.stderr
    assert "--no-auth" in result.stderr and "Traceback" not in result.stderr


def test_no_auth_says_so_in_every_answer(production_model, winter_flights, tmp_path):
    env = sidecar_env(production_model.registry_uri, production_model.tracking_uri, MLGOV_USER="mona")
    rows = records(feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(2)))
    with run_sidecar(tmp_path / "run", env, "--model", production_model.model, *serve_args(workers=1)) as sidecar:
        answers = [requests.get(sidecar.url + p, timeout=30) for p in ("/health", "/status", "/metrics", "/nowhere")]
        answers.append(requests.post(sidecar.url + "/invocations", json={"dataframe_records": rows}, timeout=30))
        assert [a.status_code for a in answers] == [200, 200, 200, 404, 200]
        for a in answers:
            assert "--no-auth" in a.headers[NO_AUTH_HEADER]
        assert answers[1].json()["authentication"]["mode"] == "none"
