"""Notifications to people: each governance event told to the users it concerns, by mail or chat.

A real SMTP server (aiosmtpd's controller on a free 127.0.0.1 port) receives the mail of a real
governance server: after each step of a walk to Ready to Use, the holders of the role it now
waits for; after a usability reject, the owner and the monitor, with the figures. Stopped during a
walk, the mail server delays no change and loses no mail: once it is back every mail arrives,
once, in order. A plain JSON webhook (Apprise ``json://``) reached through a user's own URL,
contacts set by the admin only (audited, checked, URLs masked), ``mlgov notifications list/test``.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import sys
import threading
import time
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException

from mlflow_governance.client.governance import GovernanceClient, governed_store
from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.core import events
from mlflow_governance.core import workflow as wf
from mlflow_governance.notifications import contacts, people
from tests.cli_in_process import mlgov as mlgov_in_process
from tests.conftest import ROLE_USER, USERS, acting, free_port, unique
from tests.governance_helpers import PATH, fields_for, walk_version_to
from tests.servers import mlflow_server
from tests.test_governance_server import (
    ADMIN_PASSWORD,
    api,
    create_version,
    new_version_in_development,
    password,
    server_env,
)
from tests.test_sidecar_support import eventually

aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is in the test extra (pip install -e .[test])")

MLGOV = str(Path(sys.executable).parent / "mlgov")
HOOK_TOKEN = "hooktoken" + os.urandom(6).hex()


class MailServer:
    """aiosmtpd on a fixed free port, stoppable and restartable (a mail server down for a while)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()
        self._controller = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's handler name
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    def start(self) -> MailServer:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return list(self.messages)

    def about(self, model: str) -> list[email.message.EmailMessage]:
        return [m for m in self.received() if str(m["Subject"]).startswith((f"[MLflow governance] {model}:",
                                                                             f"[MLflow governance] {model} v"))]

    def wait_for(self, model: str, count: int, timeout: float = 30.0) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.about(model)) < count:
            assert time.monotonic() < deadline, [(m["To"], m["Subject"]) for m in self.about(model)]
            time.sleep(0.2)
        return self.about(model)


def rcpt(message) -> str:
    return str(message["To"]).split("@")[0]


def event_id(message) -> int:
    return int(message[people.EVENT_HEADER])


class JsonHook:
    """A plain JSON webhook (what Apprise's json:// posts: title, message, type)."""

    def __init__(self) -> None:
        self.port, self.bodies = free_port(), []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.bodies.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook/{HOOK_TOKEN}"


@pytest.fixture(scope="module")
def mail():
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hook():
    found = JsonHook()
    yield found
    found.server.shutdown()


@pytest.fixture(scope="module")
def people_server(tmp_path_factory, mail, hook, sqlite_template):
    """A governance server on SQLite sending mail through ``mail``: the seven users, each with a
    mail contact, except dora (ModelDeployer) who gets her messages at a JSON webhook."""
    workdir = tmp_path_factory.mktemp("people-server")
    db = workdir / "mlflow.db"
    shutil.copy(sqlite_template, db)  # already migrated: the server starts sooner
    env = {**server_env(), "MLGOV_SMTP_URL": f"smtp://127.0.0.1:{mail.port}", "MLGOV_SMTP_FROM": "mlgov@example.com",
           "MLGOV_EVENTS_POLL_SECONDS": "1", "MLGOV_EVENTS_RETRY_SECONDS": "1", "MLGOV_EVENTS_RETRY_MAX_SECONDS": "2",
           "MLGOV_PUBLIC_URL": "https://mlflow.example.com"}
    with mlflow_server(workdir, f"sqlite:///{db}", f"governed-sqlite:///{db}", app_name="governance", env=env) as url:
        admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
        for user, role in USERS.items():
            admin.add_user(user, password(user))
            admin.grant(user, role)
            if user == "dora":
                admin.set_contact(user, None, hook.url)
            else:
                admin.set_contact(user, f"{user}@example.com", None)
        yield url, db


def _admin_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    env.update({"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD})
    return env


def _local_env(db: Path, user: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    env.update({"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "MLFLOW_REGISTRY_URI": f"governed-sqlite:///{db}",
                "MLGOV_USER": user, "MLGOV_ADMIN": "admin"})
    return env


def _expected(url: str, model: str) -> list[tuple[int, str]]:
    """(event id, user) of every notification the model's events call for, in commit order."""
    want = []
    for e in api(url, "olivia").events(0, 200, model):
        told = set()
        if e["kind"] in people.WAITING_KINDS and e["waiting_for"]:
            told.add(ROLE_USER[e["waiting_for"]])
        if e["kind"] == events.USABILITY_CHANGED and e["usability"] == wf.USABILITY_REJECT:
            told |= {ROLE_USER[wf.MODEL_OWNER], ROLE_USER[wf.MODEL_MONITOR]}
        want += [(e["id"], user) for user in sorted(told)]
    return want


def _mailed(mail: MailServer, model: str) -> list[tuple[int, str]]:
    return sorted((event_id(m), rcpt(m)) for m in mail.about(model))


def _admin(url: str) -> GovernanceClient:
    admin = GovernanceClient(url)
    admin.backend.auth = ("admin", ADMIN_PASSWORD)
    return admin


def _more_passes(url: str, mail: MailServer, passes: int = 2) -> None:
    """Until the server's delivery thread has run ``passes`` more passes: each time a new event (a
    model initiated: adam is mailed) committed after the previous pass was seen done, whose mail
    arrives and whose row is marked delivered. The pass that fans an event out starts after its
    commit and sends every due row of every target, so whatever was left to (re)send went then."""
    admin = _admin(url)
    for _ in range(passes):
        marker = unique("nextpass")
        api(url, "olivia").initiate(marker, "a later event, to see a delivery pass", "high", None)
        mail.wait_for(marker, 1)
        eventually(lambda: {r["user"]: r for r in admin.notifications()}["adam"]["pending"] == 0,
                   timeout=30, what="the marker's notification marked delivered")


def test_holders_of_the_waiting_role_are_mailed_after_each_step_and_the_owner_after_a_reject(people_server, mail,
                                                                                              hook):
    url, _ = people_server
    model = unique("mailed")
    api(url, "olivia").initiate(model, "flight delay prediction", "high", None)
    (first,) = mail.wait_for(model, 1)
    assert rcpt(first) == "adam" and str(first["From"]) == "MLflow governance <mlgov@example.com>"
    assert "waiting for ModelApprover" in str(first["Subject"])
    count = 1
    version = None
    for row in PATH:
        if row.scope == wf.VERSION_SCOPE and version is None:
            version = create_version(url, "devi", model)
        target = version if row.scope == wf.VERSION_SCOPE else None
        api(url, ROLE_USER[row.role]).transition(model, row.action, target, fields_for(row.source, model, target), None)
        waiting = wf.assignee_after(row)
        if waiting == wf.MODEL_DEPLOYER:  # dora's own URL: a JSON webhook, not mail
            deadline = time.monotonic() + 30
            while not any(model in b["title"] for _, b in hook.bodies):
                assert time.monotonic() < deadline, hook.bodies
                time.sleep(0.2)
            path, body = next((p, b) for p, b in hook.bodies if model in b["title"])
            assert path == f"/hook/{HOOK_TOKEN}" and f"waiting for {wf.MODEL_DEPLOYER}" in body["title"]
            assert f"Open it: https://mlflow.example.com/governance/model?name={model}#version-{version}" in body["message"]
            continue
        count += 1
        latest = mail.wait_for(model, count)[-1]  # this step's mail arrives while the walk goes on
        assert rcpt(latest) == ROLE_USER[waiting], (row, latest["Subject"])
        text = latest.get_content()
        assert f"Waiting for: {waiting}" in text and f"By: {ROLE_USER[row.role]} ({row.role})" in text
        assert f"now {row.dest}" in str(latest["Subject"])
    assert api(url, "olivia").status(model, version)["version"]["stage"] == wf.READY_TO_USE

    # A monitor's usability reject: the owner and the monitor, with the figures and the link.
    evidence = {"monitor": "production", "breaches": [{"monitor": "drift", "key": "share_drifted", "value": 0.6,
                                                       "threshold": 0.25, "comparison": "<="}]}
    api(url, "mona").transition(model, wf.REJECT, version, {}, "drift 0.6 on the last week", evidence)
    told = mail.wait_for(model, count + 2)[-2:]
    assert sorted(rcpt(m) for m in told) == ["mona", "olivia"]
    assert len({event_id(m) for m in told}) == 1
    text = told[0].get_content()
    assert "usability REJECTED by mona" in str(told[0]["Subject"]) and "Comment: drift 0.6 on the last week" in text
    assert "drift/share_drifted = 0.6 (allowed: <= 0.25)" in text
    assert f"https://mlflow.example.com/governance/model?name={model}#version-{version}" in text
    _more_passes(url, mail)  # two more delivery passes: nothing is sent twice
    assert _mailed(mail, model) == sorted(x for x in _expected(url, model) if x[1] != "dora")
    assert len({m["Message-ID"] for m in mail.about(model)}) == len(mail.about(model))


def test_a_mail_server_down_during_a_walk_delays_nothing_and_loses_nothing(people_server, mail, tmp_path):
    url, db = people_server
    model = unique("maildown")
    version = new_version_in_development(url, model)
    mail.wait_for(model, 3)  # the model-scope steps' mail
    mail.stop()
    try:
        steps = [r for r in PATH if r.scope == wf.VERSION_SCOPE]
        for i, row in enumerate(steps[:5]):
            fields = fields_for(row.source, model, version)
            started = time.monotonic()
            if i == 2:  # one step through the local CLI, another process on the server's database
                args = ["transition", model, row.action, "--version", str(version)]
                args += [a for k, v in fields.items() for a in ("--set", f"{k}={v}")]
                p = mlgov_in_process(*args, env=_local_env(db, ROLE_USER[row.role]), cwd=tmp_path)
                assert p.returncode == 0, p.stderr
            else:
                api(url, ROLE_USER[row.role]).transition(model, row.action, version, fields, None)
                assert time.monotonic() - started < 20  # the change never waits for the mail server
        expected = [x for x in _expected(url, model) if x[1] != "dora"]
        mailed_before = _mailed(mail, model)
        waiting = [x for x in expected if x not in mailed_before]
        assert len(waiting) >= 4
        # The notifications are kept, counted and their failure visible to the admin.
        admin = GovernanceClient(url)
        admin.backend.auth = ("admin", ADMIN_PASSWORD)
        deadline = time.monotonic() + 30
        while True:
            status = admin.events_status()
            persons = [t for t in status["targets"] if t["sink"] == people.PERSON]
            if persons and all(t["last_error"] for t in persons) and sum(t["undelivered"] for t in persons) >= len(waiting):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["undelivered"] >= len(waiting)
        assert all(t["url"].endswith("@example.com") or t["url"].startswith("json") for t in persons)
        listed = {r["user"]: r for r in admin.notifications()}
        for _, user in waiting:
            assert listed[user]["pending"] >= 1 and listed[user]["failed"] >= 1 and listed[user]["last_error"]
        assert "Connection" in listed[waiting[0][1]]["last_error"]
    finally:
        mail.start()
    deadline = time.monotonic() + 60
    while len(_mailed(mail, model)) < len(expected):
        assert time.monotonic() < deadline, (_mailed(mail, model), expected)
        time.sleep(0.3)
    # Nothing of the model is left to (re)try, then two more delivery passes: nothing is sent twice.
    eventually(lambda: all({r["user"]: r for r in admin.notifications()}[u]["pending"] == 0 for _, u in expected),
               timeout=30, what="every notification of the model marked delivered")
    _more_passes(url, mail)
    assert _mailed(mail, model) == sorted(expected)  # every mail, once
    for user in {u for _, u in expected}:  # and in commit order per user
        ids = [event_id(m) for m in mail.about(model) if rcpt(m) == user]
        assert ids == sorted(ids)
    listed = {r["user"]: r for r in admin.notifications()}
    assert all(listed[u]["pending"] == 0 for _, u in expected)


def test_notifications_list_and_test_are_the_admins(people_server, mail, hook):
    url, _ = people_server
    env = _admin_env(url)
    p = mlgov_in_process("notifications", "list", env=env)
    assert p.returncode == 0, p.stderr
    lines = {line.split()[0]: line for line in p.stdout.splitlines()}
    assert "mail olivia@example.com" in lines["olivia"] and "roles: ModelOwner" in lines["olivia"]
    assert HOOK_TOKEN not in p.stdout and HOOK_TOKEN[:8] not in p.stdout and "json://127.0.0.1" in lines["dora"]
    assert "no contact: not notified" in lines["admin"]
    before = len(mail.received())
    admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
    assert admin.test_notification("victor") == {"user": "victor", "contact": "victor@example.com", "ok": True,
                                                 "error": None}
    deadline = time.monotonic() + 10
    while not any(str(m["Subject"]) == people.TEST_SUBJECT for m in mail.received()[before:]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # A contact nobody answers at: exit 1, one line naming the failure, the token never echoed.
    dead = f"json://127.0.0.1:{free_port()}/hook/{HOOK_TOKEN}"
    try:
        shown = admin.set_contact("erin", None, dead)
        assert shown["channel"] == "url" and shown["contact"].startswith("json://127.0.0.1:")
        assert HOOK_TOKEN not in shown["contact"]
        p = mlgov_in_process("notifications", "test", "erin", env=env)
        assert p.returncode == 1 and p.stderr.startswith("Error: the test notification to erin"), p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and HOOK_TOKEN not in p.stderr
    finally:
        admin.set_contact("erin", "erin@example.com", None)
    # Not the admin: refused (exit 3 / 403 with a JSON body), on every route.
    mona = {**env, "MLFLOW_TRACKING_USERNAME": "mona", "MLFLOW_TRACKING_PASSWORD": password("mona")}
    p = mlgov_in_process("notifications", "list", env=mona)
    assert p.returncode == 3 and p.stderr.startswith("Error: ") and "only the admin may" in p.stderr, p.stderr
    base = f"{url}/api/2.0/mlflow-governance"
    for method, route, body in (("GET", "/notifications", None), ("POST", "/notifications/test", {"username": "olivia"}),
                                ("POST", "/users/contact", {"username": "mona", "email": "m@example.com"})):
        r = requests.request(method, base + route, auth=("mona", password("mona")), json=body, timeout=30)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", (route, r.text)
        r = requests.request(method, base + route, json=body, timeout=30)
        assert r.status_code == 401, (route, r.text)


BAD = [
    ("email", "olivia at example.com", "is not a mail address"),
    ("email", "Olivia <olivia@example.com>", "is not a mail address"),
    ("url", "nosuchservice://abc/def", "Apprise cannot use this nosuchservice:// URL"),
    ("url", "slack:///", "Apprise cannot use this slack:// URL"),
]


def test_a_bad_address_or_url_is_refused_naming_the_problem(people_server):
    url, _ = people_server
    p = mlgov_in_process("users", "set-contact", "olivia", "--email", BAD[0][1], env=_admin_env(url))
    assert p.returncode == 2 and BAD[0][2] in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    for key, value, reason in BAD:
        r = requests.post(f"{url}/api/2.0/mlflow-governance/users/contact", auth=("admin", ADMIN_PASSWORD),
                          json={"username": "olivia", key: value}, timeout=30)
        assert r.status_code == 400 and reason in r.json()["message"], r.text
    r = requests.post(f"{url}/api/2.0/mlflow-governance/users/contact", auth=("admin", ADMIN_PASSWORD),
                      json={"username": "nobody", "email": "n@example.com"}, timeout=30)
    assert r.status_code == 404 and "no user 'nobody'" in r.json()["message"]
    listed = {r["user"]: r for r in RestGovernance(url, "admin", ADMIN_PASSWORD).notifications()}
    assert listed["olivia"]["contact"] == "olivia@example.com"  # unchanged by the refusals


# --- locally (no server): the admin's command, audited, and mlgov events deliver ---------------


def test_contacts_locally_are_the_admins_audited_and_masked(registry, tmp_path, monkeypatch):
    store = governed_store()
    client = GovernanceClient()
    slack = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/" + "s3cr3t" * 4
    with acting("olivia"), pytest.raises(MlflowException, match="only the admin may") as refused:
        client.set_contact("olivia", "olivia@example.com")
    assert refused.value.error_code == "PERMISSION_DENIED"
    with acting("admin"):
        with pytest.raises(MlflowException, match="not both") as both:
            client.set_contact("olivia", "olivia@example.com", slack)
        assert both.value.error_code == "INVALID_PARAMETER_VALUE"
        shown = client.set_contact("olivia", None, slack)
        assert shown["channel"] == "url" and "s3cr3t" not in json.dumps(shown)
        assert client.set_contact("olivia", None, slack)["outcome"] == "unchanged"
        assert client.set_contact("mona", "mona@example.com")["outcome"] == "set"
        trail = [r for r in client.audit() if r["action"] == wf.SET_CONTACT][-5:]
        rows = client.notifications()
    assert [r["outcome"] for r in trail] == ["refused", "refused", "allowed", "unchanged", "allowed"]
    assert "s3cr3t" not in json.dumps(trail) and trail[2]["fields"]["url"].startswith("slack://")
    assert client.verify_audit()["ok"]
    by_user = {r["user"]: r for r in rows}
    assert by_user["olivia"]["contact"].startswith("slack://") and "s3cr3t" not in by_user["olivia"]["contact"]
    # No mail server set: a mail contact is not told, and the listing says why.
    assert "MLGOV_SMTP_URL is not set" in by_user["mona"]["note"] and by_user["adam"]["note"] == "no contact: not notified"
    # mlgov events deliver on a local registry: mail through MLGOV_SMTP_URL, once.
    server = MailServer().start()
    try:
        monkeypatch.setenv("MLGOV_SMTP_URL", f"smtp://127.0.0.1:{server.port}")
        with acting("admin"):
            client.set_contact("adam", "adam@example.com")
            assert client.set_contact("olivia", clear=True)["outcome"] == "cleared"
        model = unique("local")
        walk_version_to(client, model, wf.APPROVED_FOR_DEVELOPMENT, tmp_path)
        p = mlgov_in_process("events", "deliver", env={**os.environ, "MLGOV_USER": "admin"}, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert [rcpt(m) for m in server.about(model)] == ["adam"], p.stdout  # the candidacy waits for him
        assert people.deliverer(store).run_once().delivered == 0
        assert len(server.about(model)) == 1
    finally:
        server.stop()
        with acting("admin"):  # the PostgreSQL registry is the session's: no contact outlives the test
            for user in ("olivia", "mona", "adam"):
                client.set_contact(user, clear=True)


def test_mask_hides_tokens_and_scrub_removes_them():
    url = "slack://T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx"
    assert "abcdefghijklmnopqrstuvwx" not in contacts.mask(url)
    assert contacts.scrub(f"failed posting to {url}: 404", url).count("abcdefghijklmnopqrstuvwx") == 0
    assert contacts.check_email("a@example.com") is None and contacts.check_email("a@") is not None
