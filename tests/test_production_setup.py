"""The production set-up, as the README's "Production set-up" section describes it, on this machine.

* ``mlgov server`` (the governance server) on a fresh PostgreSQL database, with its artifact root
  on a shared directory served through the server (``--artifacts-destination``): the model's
  files are logged through the server (``mlflow-artifacts:``) and read back through it;
* a version walked to Ready to Use by its seven people over the server's REST API;
* two ``mlgov serve`` replicas (each its own gunicorn and spool directory) sharing one fresh
  PostgreSQL payload database, each reading governance from the server as mona (ModelMonitor);
* Debian's nginx in front of them (started by the test from a generated configuration).

Through nginx: both replicas score (nginx names the upstream, the payload rows the process);
mona turns usability red through the governance core; within the usability cache lifetime
plus a margin every answer from both replicas is 423, until the owner's accept lifts it; the
payload table holds every scored request id exactly once and nothing for the refused requests.

The helpers here (`production_server`, `publish_version`, `walk`, `Nginx`) are shared with
tests/test_ci_promotion.py.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.core import workflow as wf
from mlflow_governance.sidecar import schema
from tests.conftest import USERS, free_port, new_pg_database, unique
from tests.governance_helpers import PATH, fields_for
from tests.plugins.training_fixtures import _env
from tests.test_server_databases import ADMIN_PASSWORD, mlgov_server, password
from tests.test_sidecar_support import eventually, feature_rows, records, run_sidecar, serve_args, sidecar_env

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)
# The replicas' usability cache: short, so the test is quick; the gate reads governance this often.
CACHE_SECONDS = 2.0
# How long after the change a replica may still score: its read in flight when the change was
# committed (a governance server answers within 2 s here), the next read a cache lifetime later,
# and room for two busy cores.
MARGIN_SECONDS = 8.0


# --- databases and the governance server -------------------------------------------------------


@dataclass
class ProductionServer:
    """A running governance server on PostgreSQL with a shared artifact directory."""

    url: str
    workdir: Path
    artifacts: Path
    database: str

    def api(self, user: str) -> RestGovernance:
        return RestGovernance(self.url, user, password(user))

    def env(self, user: str) -> dict[str, str]:
        """What a process acting as ``user`` against this server needs (no local-mode settings)."""
        return {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": password(user)}


@contextmanager
def production_server(workdir: Path, template: str) -> Iterator[ProductionServer]:
    """``mlgov server`` on a new PostgreSQL database, a copy of the migrated ``template`` (tracking,
    registry and users in it), with
    ``--artifacts-destination`` on ``workdir/shared-artifacts``; the seven people of the lifecycle
    added with their roles."""
    artifacts = workdir / "shared-artifacts"
    artifacts.mkdir(parents=True)
    with new_pg_database("mlgov_prod", template) as database:
        env = {"MLFLOW_BACKEND_STORE_URI": database, "MLFLOW_REGISTRY_STORE_URI": "governed-" + database,
               "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts),
               "MLFLOW_FLASK_SERVER_SECRET_KEY": os.urandom(16).hex(),
               # every client of the test signs in from 127.0.0.1; no lock-out to trip over
               "MLGOV_SIGNIN_MAX_FAILURES": "1000"}
        with mlgov_server(workdir, env) as server:
            admin = RestGovernance(server.url, "admin", ADMIN_PASSWORD)
            for user, role in USERS.items():
                admin.add_user(user, password(user))
                assert admin.grant(user, role) is True
            yield ProductionServer(server.url, workdir, artifacts, database)


def model_files(trained_model, dst: Path) -> Path:
    """The session's trained model's files (MLmodel, skops file, environment), read from its registry."""
    import mlflow

    with _env(**trained_model.env()):
        return Path(mlflow.artifacts.download_artifacts(trained_model.model_uri, dst_path=str(dst)))


def publish_version(server: ProductionServer, files: Path, model: str, initiate: bool = True) -> int:
    """devi logs ``files`` through the server (``mlflow-artifacts:``) and registers them as a new
    version of ``model`` (put under governance and approved for development first when ``initiate``)."""
    from mlflow import MlflowClient

    if initiate:
        server.api("olivia").initiate(model, "flight delay prediction", "high", None)
        walk(server, model, None, wf.APPROVED_FOR_DEVELOPMENT)
    with _env(**server.env("devi"), MLFLOW_REGISTRY_URI=None, MLGOV_USER=None):
        client = MlflowClient()
        experiment = client.get_experiment_by_name("production-setup")
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("production-setup")
        run = client.create_run(experiment_id, run_name=f"{model} files")
        client.log_artifacts(run.info.run_id, str(files), "model")
        client.set_terminated(run.info.run_id)
        source = f"{run.info.artifact_uri}/model"
        assert source.startswith("mlflow-artifacts:/"), source
        return int(client.create_model_version(model, source=source, run_id=run.info.run_id).version)


def walk(server: ProductionServer, model: str, version: int | None, stage: str, comment: str | None = None) -> None:
    """Every happy-path step of the model (``version`` None) or version up to ``stage``, each by its role's user."""
    role_user = {role: user for user, role in USERS.items()}
    scope = wf.MODEL_SCOPE if version is None else wf.VERSION_SCOPE
    while True:
        status = server.api("olivia").status(model, version)
        current = status["stage"] if version is None else status["version"]["stage"]
        if current == stage:
            return
        row = next(r for r in PATH if r.source == current and r.scope == scope)
        server.api(role_user[row.role]).transition(model, row.action, version, fields_for(current, model, version),
                                                   comment or f"{row.action} ({row.role})")


def enter_together(stack: ExitStack, managers: list) -> list:
    """Enter context managers (servers that take seconds to start) at the same time; each one
    entered is exited by ``stack``, also when another failed to start."""
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = [pool.submit(m.__enter__) for m in managers]
    for manager, future in zip(managers, futures, strict=True):
        if future.exception() is None:
            stack.push(manager.__exit__)
    return [f.result() for f in futures]


# --- nginx -------------------------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc): a sidecar's gunicorn master and workers."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


NGINX_CONF = """\
user {user} {group};
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    upstream sidecars {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sidecars;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    url: str
    proc: subprocess.Popen
    prefix: Path


@contextmanager
def nginx(prefix: Path, upstreams: list[str]) -> Iterator[Nginx]:
    """Debian's nginx in the foreground, from a generated configuration in ``prefix`` (pid, logs and
    temporary files there too), balancing ``upstreams`` (host:port) round robin on a free port."""
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        user=pwd.getpwuid(os.getuid()).pw_name, group=grp.getgrgid(os.getgid()).gr_name, prefix=prefix, port=port,
        servers="\n".join(f"        server {u};" for u in upstreams)))
    check = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    log = open(prefix / "nginx.out", "w")
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log"),
                             "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: proc.poll() is None and _answers(url + "/health"), timeout=30,
                   what=f"nginx answering on {url} ({(prefix / 'error.log')})")
        yield Nginx(url, proc, prefix)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def payload_rows(database: str, ids: list[str] | None = None) -> list[tuple[str, str, int]]:
    """(request_id, replica, version) of the payload table (every row, or those of ``ids``)."""
    p = schema.payload
    engine = sa.create_engine(database)
    try:
        with engine.connect() as conn:
            query = sa.select(p.c.request_id, p.c.replica, p.c.version)
            if ids is not None:
                query = query.where(p.c.request_id.in_(ids))
            return [tuple(r) for r in conn.execute(query)]
    finally:
        engine.dispose()


# --- the test ----------------------------------------------------------------------------------


@pytest.mark.skipif(NGINX is None, reason="Debian's nginx is not installed (make test installs it: make load-balancer)")
def test_two_replicas_behind_nginx_refuse_together_and_log_every_row_once(trained_model, winter_flights, tmp_path,
                                                                          pg_template):
    model = unique("prod-delay")
    body = {"dataframe_records": records(feature_rows(winter_flights.dropna(subset=["DEPARTURE_DELAY"]).head(2)))}
    with ExitStack() as stack:
        server = stack.enter_context(production_server(tmp_path / "server", pg_template))
        version = publish_version(server, model_files(trained_model, tmp_path / "files"), model)
        # The files went through the server into its shared artifact directory.
        stored = list(server.artifacts.rglob("MLmodel"))
        assert len(stored) == 1 and stored[0].parent.name == "model", stored
        walk(server, model, version, wf.READY_TO_USE)
        assert server.api("mona").status(model, None)["production_version"] == version

        payloads = stack.enter_context(new_pg_database("mlgov_payloads"))
        env = sidecar_env(**server.env("mona"))
        replicas = enter_together(stack, [run_sidecar(
            tmp_path / name, env, "--model", model, "--payload-url", payloads,
            "--spool-dir", str(tmp_path / name / "spool"),
            *serve_args("--threads", "4", cache=CACHE_SECONDS, auth=True), auth=("dora", password("dora")))
            for name in ("replica-a", "replica-b")])
        upstream_of = {r.url.removeprefix("http://"): r for r in replicas}
        balancer = stack.enter_context(nginx(tmp_path / "nginx", list(upstream_of)))

        # Through nginx too, nobody scores, explains, labels or reads status without credentials.
        for method, path in (("POST", "/invocations"), ("POST", "/explain"), ("POST", "/feedback"),
                             ("GET", "/status"), ("GET", "/metrics")):
            anonymous = requests.request(method, balancer.url + path, json=body, timeout=30)
            assert anonymous.status_code == 401, (path, anonymous.status_code, anonymous.text[:200])
        assert requests.get(balancer.url + "/health", timeout=30).status_code == 200

        # Scoring through the load balancer as dora: nginx alternates, both replicas answer.
        session = requests.Session()
        session.auth = ("dora", password("dora"))
        scored: list[str] = []
        answered_by: dict[str, int] = {}
        for _ in range(20):
            r = session.post(balancer.url + "/invocations", json=body, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["version"] == version
            scored += r.json()["request_ids"]
            answered_by[r.headers["X-Upstream"]] = answered_by.get(r.headers["X-Upstream"], 0) + 1
        assert set(answered_by) == set(upstream_of), answered_by
        # The payload rows name the process that answered: workers of both replicas.
        rows = eventually(lambda: len(found := payload_rows(payloads, scored)) == len(scored) and found,
                          timeout=30, what="every scored row in the payload table")
        pids = {int(replica.rsplit(" pid ", 1)[1]) for _, replica, _ in rows}
        for sidecar in replicas:
            assert pids & descendants(sidecar.proc.pid), f"no payload row from {sidecar.url}"
        assert pids <= descendants(replicas[0].proc.pid) | descendants(replicas[1].proc.pid)

        # mona (ModelMonitor) turns usability red through the governance core.
        server.api("mona").transition(model, wf.REJECT, version, None, "accuracy estimate 0.61 on live traffic")
        changed = time.monotonic()
        last_200 = None
        refused_by: dict[str, int] = {}
        deadline = changed + CACHE_SECONDS + MARGIN_SECONDS
        while time.monotonic() < deadline + 5:  # past the deadline only to catch a late 200
            r = session.post(balancer.url + "/invocations", json=body, timeout=30)
            upstream = r.headers["X-Upstream"]
            if r.status_code == 200:
                scored += r.json()["request_ids"]
                last_200 = time.monotonic() - changed
                refused_by.clear()
            else:
                assert r.status_code == 423, r.text
                refused_by[upstream] = refused_by.get(upstream, 0) + 1
                if min(refused_by.get(u, 0) for u in upstream_of) >= 10:
                    break
            time.sleep(0.05)
        assert last_200 is None or last_200 <= CACHE_SECONDS + MARGIN_SECONDS, \
            f"a replica still scored {last_200:.1f}s after the change"
        assert set(refused_by) == set(upstream_of) and min(refused_by.values()) >= 10, refused_by
        print(f"last 200 answer {last_200 if last_200 is None else round(last_200, 2)} s after the reject "
              f"(usability cache {CACHE_SECONDS} s)")
        # From then on every answer, from both replicas, is the 423 naming who and why.
        after = [session.post(balancer.url + "/invocations", json=body, timeout=30) for _ in range(12)]
        assert [r.status_code for r in after] == [423] * 12, [r.text for r in after if r.status_code != 423]
        assert {r.headers["X-Upstream"] for r in after} == set(upstream_of)
        refusal = after[0].json()
        assert refusal["error_code"] == "MODEL_EXECUTION_NOT_ALLOWED" and refusal["version"] == version
        assert "mona" in refusal["message"] and "accuracy estimate 0.61" in refusal["message"]
        # Each worker of a replica reads governance on its own clock, so a worker nginx sent no
        # traffic to may read it last: within the same bound as the last 200 above.
        for sidecar in replicas:
            status = eventually(lambda s=sidecar: (st := s.get("/status").json())["serving"] is False and st,
                                timeout=max(0.5, changed + CACHE_SECONDS + MARGIN_SECONDS - time.monotonic()),
                                interval=0.1, what=f"{sidecar.url}/status saying it does not serve")
            assert status["usability"] == wf.USABILITY_REJECT, status

        # The owner's review lifts it: both replicas score again, without a restart.
        server.api("olivia").transition(model, wf.ACCEPT, version, None, "reviewed: the estimate was a false alarm")
        def six_answers() -> list[requests.Response] | None:
            answers = [session.post(balancer.url + "/invocations", json=body, timeout=30) for _ in range(6)]
            for r in answers:
                if r.status_code == 200:
                    scored.extend(r.json()["request_ids"])
            return answers if all(r.status_code == 200 for r in answers) else None

        resumed = eventually(six_answers, timeout=CACHE_SECONDS + MARGIN_SECONDS, interval=0.1,
                             what="both replicas scoring after the accept")
        assert {r.headers["X-Upstream"] for r in resumed} == set(upstream_of)

        # Every scored request id exactly once, from both replicas; nothing for the refused requests.
        every = eventually(lambda: len(found := payload_rows(payloads)) >= len(scored) and found, timeout=30,
                           what="the payload rows of every scored request")
        ids = [request_id for request_id, _, _ in every]
        assert len(ids) == len(set(ids)) == len(scored) and set(ids) == set(scored)
        assert {v for _, _, v in every} == {version}
