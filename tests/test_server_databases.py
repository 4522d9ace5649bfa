"""The governance server and its databases: started once with two workers, and database outages.

* ``mlgov server --workers 2`` on a fresh database: the databases are migrated before the
  workers start, so no worker dies on MLflow's auth-database migration (``table users already
  exists``) and is restarted; both workers answer.
* A database stopped under a live server (a private PostgreSQL cluster, never the shared one):
  ``/health/ready`` answers 503 naming the database, every route (governance API, MLflow's REST
  and native routes, the approvals page, the ``mlgov`` CLI) answers one clean 503 line naming it,
  never the driver's text; started again, everything recovers and the audit chain is intact.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from mlflow_governance.client.rest import RestGovernance
from mlflow_governance.core import workflow as wf
from mlflow_governance.core.errors import leaks_database_text
from mlflow_governance.server import databases, outage
from tests.cli_in_process import mlgov as mlgov_in_process
from tests.conftest import PG_ADMIN_URL, free_port, unique

MLGOV = str(Path(sys.executable).parent / "mlgov")
ADMIN_PASSWORD = "admin-pass-" + os.urandom(4).hex()
USERS = {"olivia": wf.MODEL_OWNER, "adam": wf.MODEL_APPROVER}
REGISTRY_DOWN = "the registry database is not reachable; try again later"
USERS_DOWN = "the user database is not reachable; try again later"
# What MLflow used to show a client when PostgreSQL was stopped.
DRIVER_TEXT = re.compile(r"psycopg|Connection refused|Is the server running|sqlalche|OperationalError|\[SQL", re.I)


def password(user: str) -> str:
    return f"{user}-password-1"


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLGOV_"))}
    # MLflow's job runner starts five huey consumers: no test here schedules a job.
    env.update({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLGOV_ADMIN": "admin",
                "MLGOV_ADMIN_PASSWORD": ADMIN_PASSWORD})
    env.update(extra)
    return env


def _wait_ready(server: Server, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"mlgov server exited with {server.proc.returncode}:\n{server.log_text()[-4000:]}")
        try:
            if requests.get(server.url + outage.READY_PATH, timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"mlgov server not ready within {timeout}s:\n{server.log_text()[-4000:]}")


@contextmanager
def mlgov_server(workdir: Path, env: dict[str, str], workers: int = 1) -> Iterator[Server]:
    """``mlgov server`` on a free port until it is ready; stopped (its process group) afterwards."""
    port = free_port()
    log = workdir / f"mlgov-server-{port}.log"
    cmd = [MLGOV, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_clean_env(env), cwd=workdir,
                                start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", port, proc, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _add_users(url: str) -> None:
    admin = RestGovernance(url, "admin", ADMIN_PASSWORD)
    for user, role in USERS.items():
        admin.add_user(user, password(user))
        assert admin.grant(user, role) is True


def _cli(url: str, user: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    secret = ADMIN_PASSWORD if user == "admin" else password(user)
    env = _clean_env({"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": user,
                      "MLFLOW_TRACKING_PASSWORD": secret})
    return mlgov_in_process(*args, env=env, cwd=cwd)


def _assert_clean_503(response: requests.Response, message: str) -> None:
    """One JSON line naming the database: no driver text, no host, no SQL."""
    assert response.status_code == 503, (response.request.url, response.status_code, response.text[:500])
    assert response.json() == {"error_code": "TEMPORARILY_UNAVAILABLE", "message": message}, response.text[:500]
    assert not DRIVER_TEXT.search(response.text) and not leaks_database_text(response.text)


# --- two workers on a fresh database ----------------------------------------------------------


def _worker_pids(log: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log)]


def _worker_of(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """The worker process holding the server side of the connection from ``client_port``."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


def _serving_workers(server: Server, pids: list[int], rounds: int = 6) -> set[int]:
    """Which workers answer signed-in requests (each on its own connection, 8 at a time)."""
    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()

    def one(_: int) -> int | None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            conn.request("GET", "/api/2.0/mlflow-governance/whoami", headers={"Authorization": f"Basic {token}"})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, body[:300]
            return _worker_of(server.port, conn.sock.getsockname()[1], pids)
        finally:
            conn.close()

    seen: set[int] = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(rounds):
            seen.update(pid for pid in pool.map(one, range(24)) if pid is not None)
            if len(seen) == len(pids):
                break
    return seen


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_registry(request, tmp_path) -> Iterator[str]:
    """A governed registry URI on a database that does not exist yet (SQLite) or is empty."""
    if request.param == "sqlite":
        yield f"governed-sqlite:///{tmp_path}/fresh.db"
        return
    import sqlalchemy as sa

    name = f"mlgov_fresh_{os.urandom(5).hex()}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield "governed-" + PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# Loaded by every Python process of the server under test (PYTHONPATH): a worker process that
# runs an Alembic upgrade waits there until the other worker does too, so two workers that both
# migrate always do it at the same moment (the race, made certain instead of likely); each one
# that gets there leaves a file named by its pid.
BARRIER_SITECUSTOMIZE = """
import multiprocessing, os, time
from pathlib import Path
import alembic.command

_upgrade = alembic.command.upgrade


def upgrade(*args, **kwargs):
    if multiprocessing.current_process().name != "MainProcess":  # a uvicorn worker
        barrier = Path(os.environ["MLGOV_TEST_MIGRATION_BARRIER"])
        (barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + 20
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    return _upgrade(*args, **kwargs)


alembic.command.upgrade = upgrade
"""


def test_two_workers_start_on_a_fresh_database_without_a_restart(fresh_registry, tmp_path):
    site, barrier = tmp_path / "site", tmp_path / "barrier"
    site.mkdir()
    barrier.mkdir()
    (site / "sitecustomize.py").write_text(BARRIER_SITECUSTOMIZE)
    env = {"MLFLOW_REGISTRY_STORE_URI": fresh_registry, "PYTHONPATH": str(site),
           "MLGOV_TEST_MIGRATION_BARRIER": str(barrier)}
    with mlgov_server(tmp_path, env, workers=2) as server:
        deadline = time.monotonic() + 120
        while server.log_text().count("Application startup complete.") < 2 and time.monotonic() < deadline:
            assert server.proc.poll() is None, server.log_text()[-4000:]
            time.sleep(0.3)
        time.sleep(1)  # a worker that dies right after its start would be reported by now
        log = server.log_text()
        pids = _worker_pids(log)
        for problem in ("died", "Traceback", "already exists", "Waiting for child process"):
            assert problem not in log, f"{problem!r} in the server log:\n{log[-6000:]}"
        assert len(set(pids)) == 2, log[-4000:]
        for pid in pids:
            os.kill(pid, 0)  # both still alive
        assert _serving_workers(server, pids) == set(pids), "not every worker answered"
        assert "Created admin user 'admin'" in log and log.count("Creating initial MLflow database tables") == 1
        assert not any(barrier.iterdir()), "a worker migrated a database (it was not at head when the workers started)"


# --- a database stopped under a live server ---------------------------------------------------


def _eventually_ready(server: Server, timeout: float = 60) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(server.url + outage.READY_PATH, timeout=30)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def test_postgres_stopped_under_a_live_server_answers_503_then_recovers(private_postgres, tmp_path):
    """Registry, tracking and users in one database of a private cluster (the default layout)."""
    db = private_postgres.create_database("governance")
    model = unique("outage")
    with mlgov_server(tmp_path, {"MLFLOW_REGISTRY_STORE_URI": "governed-" + db}) as server:
        url = server.url
        _add_users(url)
        RestGovernance(url, "olivia", password("olivia")).initiate(model, "flight delay prediction", "high", None)
        assert requests.get(url + outage.READY_PATH, timeout=30).json() == {"status": "ok"}

        private_postgres.stop()
        assert requests.get(url + "/health", timeout=30).status_code == 200  # liveness: the process is up
        ready = requests.get(url + outage.READY_PATH, timeout=30)
        assert ready.status_code == 503 and ready.headers["Cache-Control"] == "no-store"
        assert ready.json() == {"status": "unavailable", "service": "registry database",
                                "services": ["registry database"], "message": REGISTRY_DOWN}
        # The governed action from the shell: one line, exit 6 (unavailable).
        p = _cli(url, "adam", "transition", model, "approve", cwd=tmp_path)
        assert (p.returncode, p.stderr) == (6, f"Error: {REGISTRY_DOWN}\n"), (p.stdout, p.stderr)
        adam = ("adam", password("adam"))
        _assert_clean_503(requests.post(f"{url}/api/2.0/mlflow-governance/models/transition",
                                        json={"model": model, "action": "approve"}, auth=adam, timeout=30),
                          REGISTRY_DOWN)
        # MLflow's own routes through the governed store, the UI's tag path, and native FastAPI routes.
        _assert_clean_503(requests.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": model},
                                       auth=adam, timeout=30), REGISTRY_DOWN)
        _assert_clean_503(requests.post(f"{url}/ajax-api/2.0/mlflow/registered-models/set-tag",
                                        json={"name": model, "key": "mlgov.action", "value": "approve"},
                                        auth=adam, timeout=30), REGISTRY_DOWN)
        for path in ("/api/2.0/mlflow-artifacts/artifacts/notes.txt", "/api/3.0/mlflow/server-info"):
            _assert_clean_503(requests.get(url + path, auth=adam, timeout=30), REGISTRY_DOWN)
        page = requests.get(f"{url}/governance/model", params={"name": model}, auth=adam, timeout=30)
        assert page.status_code == 503 and page.headers["Content-Type"].startswith("text/html")
        assert REGISTRY_DOWN in page.text and not DRIVER_TEXT.search(page.text)
        # Strangers learn nothing more than before: 401, without touching the database.
        assert requests.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": model},
                            timeout=30).status_code == 401

        private_postgres.start()
        assert _eventually_ready(server).json() == {"status": "ok"}
        p = _cli(url, "adam", "transition", model, "approve", cwd=tmp_path)
        assert p.returncode == 0 and wf.DATA_ACQUISITION in p.stdout, p.stderr
        p = _cli(url, "admin", "audit", "verify", cwd=tmp_path)
        assert p.returncode == 0 and "audit trail intact" in p.stdout, (p.stdout, p.stderr)
        rows = RestGovernance(url, "admin", ADMIN_PASSWORD).audit(model, None)
        assert [(r["action"], r["actor"], r["outcome"]) for r in rows][-1] == ("approve", "adam", "allowed")
        assert server.proc.poll() is None
        assert "Child process" not in server.log_text()


def test_the_user_database_alone_down_is_named(private_postgres, tmp_path):
    """The user database on the private cluster, the registry on SQLite: the outage names the users."""
    users_db = private_postgres.create_database("users")
    env = {"MLFLOW_REGISTRY_STORE_URI": f"governed-sqlite:///{tmp_path}/mlflow.db", "MLGOV_AUTH_DATABASE_URI": users_db}
    with mlgov_server(tmp_path, env) as server:
        url = server.url
        _add_users(url)
        olivia = ("olivia", password("olivia"))
        private_postgres.stop()
        ready = requests.get(url + outage.READY_PATH, timeout=30)
        assert ready.status_code == 503 and ready.json()["service"] == "user database"
        assert ready.json()["message"] == USERS_DOWN
        _assert_clean_503(requests.get(f"{url}/api/2.0/mlflow-governance/whoami", auth=olivia, timeout=30), USERS_DOWN)
        _assert_clean_503(requests.get(f"{url}/api/2.0/mlflow/registered-models/search", auth=olivia, timeout=30),
                          USERS_DOWN)
        # A native route, whose MLflow middleware would answer 401 "not authenticated".
        _assert_clean_503(requests.get(f"{url}/api/2.0/mlflow-artifacts/artifacts/notes.txt", auth=olivia,
                                       timeout=30), USERS_DOWN)
        page = requests.get(f"{url}/governance/", auth=olivia, timeout=30)
        assert page.status_code == 503 and USERS_DOWN in page.text and not DRIVER_TEXT.search(page.text)
        p = _cli(url, "olivia", "tasks", cwd=tmp_path)
        assert (p.returncode, p.stderr) == (6, f"Error: {USERS_DOWN}\n"), (p.stdout, p.stderr)

        private_postgres.start()
        assert _eventually_ready(server).json() == {"status": "ok"}
        who = requests.get(f"{url}/api/2.0/mlflow-governance/whoami", auth=olivia, timeout=30)
        assert who.status_code == 200 and who.json()["roles"] == [wf.MODEL_OWNER]


# --- without a server -------------------------------------------------------------------------


def test_server_databases_are_named_by_the_first_service_they_hold(tmp_path):
    one = databases.server_databases("governed-postgresql://u:pw@db/gov", None, "postgresql+psycopg://u:pw@db:5432/gov")
    assert [(d.service, d.settings) for d in one] == [
        ("registry database", ("MLFLOW_REGISTRY_STORE_URI", "MLFLOW_BACKEND_STORE_URI", "MLGOV_AUTH_DATABASE_URI"))]
    assert one[0].where == "postgresql://u:***@db/gov"
    three = databases.server_databases("governed-sqlite:///r.db", "postgresql://t/track", "sqlite:///users.db")
    assert [d.service for d in three] == ["registry database", "tracking database", "user database"]
    files = databases.server_databases("governed-sqlite:///r.db", "file:./mlruns", "sqlite:///r.db")
    assert [d.service for d in files] == ["registry database"]  # a file tracking store is no database
    with pytest.raises(Exception, match="MLGOV_AUTH_DATABASE_URI must name a database"):
        databases.server_databases("governed-sqlite:///r.db", None, "http://users")
    assert outage.readiness_body([]) == {"status": "ok"}
    assert outage.readiness_body(["registry database", "user database"])["message"] == (
        "the registry database and user database are not reachable; try again later")
    # A missing SQLite file is "not reachable", and the probe does not create it.
    missing = databases.Database("registry database", f"sqlite:///{tmp_path}/absent.db", ())
    assert databases.probe(missing) is not None and not (tmp_path / "absent.db").exists()


def test_mlgov_server_names_an_unreachable_database_in_one_line(tmp_path):
    port = free_port()
    env = _clean_env({"MLFLOW_REGISTRY_STORE_URI": f"governed-postgresql://gov:s3cret-pw@127.0.0.1:{port}/gov"})
    p = subprocess.run([MLGOV, "server", "--port", str(free_port())], env=env, capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 6, p.stderr
    assert p.stderr.startswith(f"Error: cannot reach the registry database at postgresql://gov:***@127.0.0.1:{port}/gov")
    assert p.stderr.count("\n") == 1 and "s3cret-pw" not in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([MLGOV, "server", "--workers", "0"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and "--workers" in p.stderr
