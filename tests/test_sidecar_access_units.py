"""The sidecar's route table, its caller check and its explanation admission, without gunicorn.

`ServerAuthentication` is exercised against a small real HTTP server on 127.0.0.1 that answers the
governance server's access route as the real one does and counts what it is asked (the real server
is in tests/test_sidecar_auth.py).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlflow_governance.sidecar import ServeOptions, access, limits
from mlflow_governance.sidecar.app import create_app


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class FakeGovernance(BaseHTTPRequestHandler):
    """The access route: alice/right reads and gives feedback, bob/right is denied the model."""

    asked: list[str] = []
    down = False

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        FakeGovernance.asked.append(self.headers.get("Authorization") or "")
        if not self.path.startswith(access.ACCESS_PATH):
            self._answer(404, {"error_code": "ENDPOINT_NOT_FOUND"})
        elif FakeGovernance.down:
            self._answer(500, {"error_code": "INTERNAL_ERROR", "message": "psycopg2.OperationalError: secret-host"})
        elif self.headers.get("Authorization") == basic("alice", "right"):
            self._answer(200, {"user": "alice", "read": True, "feedback": True, "correct": False})
        elif self.headers.get("Authorization") == basic("bob", "right"):
            self._answer(403, {"error_code": "PERMISSION_DENIED", "message": "'bob' may not read model 'm'"})
        else:
            self._answer(401, {"error_code": "UNAUTHENTICATED", "message": "wrong user name or password"})

    def _answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def governance() -> Iterator[str]:
    FakeGovernance.asked, FakeGovernance.down = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGovernance)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_every_route_of_the_app_has_a_rule_and_every_rule_a_route(tmp_path):
    options = ServeOptions(model="m", no_auth=True, payload_url=f"sqlite:///{tmp_path / 'p.db'}",
                           spool_dir=str(tmp_path / "spool"))
    app = create_app(options, client=object(), start_threads=False)
    served = {(method, rule.rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == set(access.ROUTES), served ^ set(access.ROUTES)
    assert [k for k, v in access.ROUTES.items() if v == access.PUBLIC] == [("GET", "/health")]


def test_caller_rules():
    reader = access.Caller("r", read=True)
    monitor = access.Caller("m", read=True, feedback=True)
    owner = access.Caller("o", read=True, correct=True)
    outsider = access.Caller("x", read=False, feedback=True, correct=True)
    assert access.refusal_for(reader, access.READ, "m") is None
    assert access.refusal_for(reader, access.FEEDBACK, "m").status == 403
    assert "ModelMonitor" in access.refusal_for(reader, access.FEEDBACK, "m").message
    assert access.refusal_for(monitor, access.FEEDBACK, "m") is None
    assert access.refusal_for(monitor, access.CORRECT, "m").status == 403
    assert access.refusal_for(owner, access.CORRECT, "m") is None
    for rule in (access.READ, access.FEEDBACK, access.CORRECT):  # no role makes up for READ
        assert "READ" in access.refusal_for(outsider, rule, "m").message
    assert access.rule_of("POST", "/nowhere") is None and access.rule_of("get", "/status") == access.READ


def test_server_answers_are_remembered_for_the_cache_lifetime_failures_never(governance):
    check = access.ServerAuthentication(governance, "m", cache_seconds=0.5, max_failures=3, lockout_seconds=60)
    alice = basic("alice", "right")
    assert check.caller(alice, "10.0.0.1") == access.Caller("alice", read=True, feedback=True, correct=False)
    assert check.caller(alice, "10.0.0.1").user == "alice"
    assert FakeGovernance.asked.count(alice) == 1  # the second answer came from the cache
    time.sleep(0.6)
    check.caller(alice, "10.0.0.1")
    assert FakeGovernance.asked.count(alice) == 2  # expired: asked again
    with pytest.raises(access.Refused) as denied:
        check.caller(basic("bob", "right"), "10.0.0.1")
    assert denied.value.status == 403
    check_again = pytest.raises(access.Refused)
    with check_again:
        check.caller(basic("bob", "right"), "10.0.0.1")
    assert FakeGovernance.asked.count(basic("bob", "right")) == 1  # a permission refusal is remembered too
    wrong = basic("alice", "wrong")
    for _ in range(2):
        with pytest.raises(access.Refused) as refused:
            check.caller(wrong, "10.0.0.2")
        assert refused.value.status == 401 and refused.value.headers["WWW-Authenticate"].startswith("Basic")
    assert FakeGovernance.asked.count(wrong) == 2  # failures are never remembered


def test_an_address_guessing_passwords_is_stopped_before_the_server_is_asked(governance):
    check = access.ServerAuthentication(governance, "m", cache_seconds=5, max_failures=3, lockout_seconds=60)
    for n in range(3):
        with pytest.raises(access.Refused) as refused:
            check.caller(basic("alice", f"guess{n}"), "10.0.0.9")
        assert refused.value.status == 401
    asked = len(FakeGovernance.asked)
    with pytest.raises(access.Refused) as slowed:
        check.caller(basic("alice", "right"), "10.0.0.9")
    assert slowed.value.status == 429 and int(slowed.value.headers["Retry-After"]) >= 1
    assert len(FakeGovernance.asked) == asked
    assert check.caller(basic("alice", "right"), "10.0.0.10").user == "alice"  # other addresses go on


def test_missing_or_foreign_credentials_and_a_failing_server(governance):
    check = access.ServerAuthentication(governance, "m", cache_seconds=5)
    for header in (None, "", "Digest abc", "Basic " + "A" * 9000):
        with pytest.raises(access.Refused) as refused:
            check.caller(header, "10.0.0.1")
        assert refused.value.status == 401
    assert FakeGovernance.asked == []
    FakeGovernance.down = True
    with pytest.raises(access.Refused) as unavailable:
        check.caller(basic("alice", "right"), "10.0.0.1")
    assert unavailable.value.status == 503 and "secret-host" not in unavailable.value.message
    gone = access.ServerAuthentication("http://127.0.0.1:9", "m", cache_seconds=5, timeout=2)
    with pytest.raises(access.Refused) as unreachable:
        gone.caller(basic("alice", "right"), "10.0.0.1")
    assert unreachable.value.status == 503 and unreachable.value.error_code == "AUTHENTICATION_UNAVAILABLE"


def test_explanations_per_caller_are_rate_limited():
    admission = limits.ExplainAdmission(per_minute=3, queue=5)
    for _ in range(3):
        with admission.admitted("alice"):
            pass
    with pytest.raises(limits.Busy) as busy:
        with admission.admitted("alice"):
            pass
    assert 1 <= busy.value.retry_after <= 20
    with admission.admitted("bob"):  # another caller has its own budget
        pass


def test_explanations_wait_in_a_bounded_queue():
    admission = limits.ExplainAdmission(per_minute=100, queue=1)
    release = threading.Event()
    inside = threading.Barrier(3)

    def hold(name: str) -> None:
        with admission.admitted(name):
            inside.wait(5)
            release.wait(5)

    threads = [threading.Thread(target=hold, args=(f"c{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    inside.wait(5)  # one running and one waiting (here: both inside the admission)
    with pytest.raises(limits.Busy) as busy:
        with admission.admitted("c3"):
            pass
    assert busy.value.retry_after >= 1 and "at most 2" in busy.value.message
    release.set()
    for t in threads:
        t.join(5)
    with admission.admitted("c3"):
        assert admission.inside == 1


def test_a_registry_failure_shown_on_status_keeps_no_secret():
    from mlflow_governance.sidecar.gate import _reason

    shown = _reason(Exception("cannot reach the governance server at http://svc:hunter2@10.1.2.3:5000/?token=abc1 "
                              "(connection refused)"))
    assert "hunter2" not in shown and "abc1" not in shown and "connection refused" in shown
